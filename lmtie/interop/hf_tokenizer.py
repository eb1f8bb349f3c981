"""The tokenizer files of an export: a fast tokenizer (``tokenizer.json``) giving lmtie's ids exactly.

One builder per lmtie tokenizer, keyed by its name (``register_fast_tokenizer``); each makes a
``tokenizers.Tokenizer`` whose ids are the lmtie Dictionary's:

- ``spm``: a BPE model over the SentencePiece pieces (byte fallback on), merges ordered by piece
  score as SentencePiece merges them; each line gets SentencePiece's dummy-prefix ``▁`` and its
  spaces become ``▁``; only identity-normalised models (what lmtie-preprocess trains) are exact,
  others are refused;
- ``char``: one token per character, ``<unk>`` for the others; ``bytes``: byte fallback only;
- ``space``: whole words split on whitespace (Unicode White_Space; Python's ``str.split`` also
  splits on the separators U+001C..U+001F, which the exported tokenizer keeps inside words).

Lines: as lmtie, every newline becomes ``</s>`` (id 2), and ``add_special_tokens`` (HF's default)
prepends one ``</s>``, the token lmtie starts every sequence with. Text after the last newline has
no ``</s>`` after it (lmtie's ``encode`` adds one); the literal strings ``<s>``, ``<pad>``,
``</s>``, ``<unk>`` in text are read as those tokens.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Callable

from lmtie.data.tokenizers import tokenizer_class
from lmtie.errors import UserError

FAST_TOKENIZERS: dict[str, Callable] = {}  # lmtie tokenizer name -> builder(tokenizer) -> tokenizers.Tokenizer
_PROBE = "ﬁ Ａ ①  x\t\u00a0é"  # NFKC would change each of these; an identity model keeps them


def register_fast_tokenizer(name: str):
    def wrap(fn: Callable) -> Callable:
        FAST_TOKENIZERS[name] = fn
        return fn

    return wrap


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise UserError("exporting a tokenizer.json needs the tokenizers library: pip install 'lmtie[hf]'")
    return tokenizers


def _finish(fast, d, normalizers: list, prefix_lines: bool = False):
    """Specials, the newline -> ``</s>`` normaliser (after ``normalizers``) and the ``</s>`` template."""
    tk = _tokenizers()
    N = tk.normalizers
    steps = list(normalizers)
    if prefix_lines:  # a ▁ before every non-empty line, but not before the token </s> itself (it is normalised too)
        steps.append(N.Replace(tk.Regex(rf"\A(?!\n|\z|{re.escape(d.eos_word)}\z)|(?<=\n)(?=[^\n])"), "▁"))
    steps.append(N.Replace("\n", d.eos_word))
    fast.normalizer = N.Sequence(steps)
    fast.add_special_tokens([tk.AddedToken(d.eos_word, special=True, normalized=True)] +
                            [tk.AddedToken(w, special=True, normalized=False) for w in (d.bos_word, d.pad_word,
                                                                                         d.unk_word)])
    fast.post_processor = tk.processors.TemplateProcessing(
        single=f"{d.eos_word} $A", pair=f"{d.eos_word} $A {d.eos_word} $B", special_tokens=[(d.eos_word, d.eos())])
    return fast


def _specials(d) -> dict[str, int]:
    return {d.bos_word: d.bos(), d.pad_word: d.pad(), d.eos_word: d.eos(), d.unk_word: d.unk()}


@register_fast_tokenizer("spm")
def spm_fast(tok):
    tk = _tokenizers()
    sp, d = tok.sp, tok.dictionary
    if sp.decode(sp.encode(_PROBE)) != _PROBE or not sp.encode("a", out_type=str)[0].startswith("▁"):
        raise UserError("the SentencePiece model normalises text (not an identity model with a dummy prefix, as "
                        "lmtie-preprocess trains); its tokenizer.json would not give the same ids")
    vocab, normal = dict(_specials(d)), {}
    for i in range(sp.get_piece_size()):
        if not (sp.is_control(i) or sp.is_unknown(i)):
            vocab[sp.id_to_piece(i)] = int(tok.to_dict[i])
            if not (sp.is_byte(i) or sp.is_unused(i)):
                normal[sp.id_to_piece(i)] = i
    for i, sym in enumerate(d.symbols):  # the padding symbols (madeupwordNNNN): ids of their own, never produced
        vocab.setdefault(sym, i)
    # SentencePiece BPE merges the adjacent pair whose union scores highest; scores fall with the id,
    # so a merge's rank is its result's id: every split of a piece into two pieces, pieces in id order
    merges = [(p[:k], p[k:]) for p, _ in sorted(normal.items(), key=lambda kv: kv[1])
              for k in range(1, len(p)) if p[:k] in normal and p[k:] in normal]
    fast = tk.Tokenizer(tk.models.BPE(vocab, merges, unk_token=d.unk_word, byte_fallback=True, fuse_unk=False))
    fast.pre_tokenizer = tk.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    D = tk.decoders
    fast.decoder = D.Sequence([D.Replace("▁", " "), D.ByteFallback(), D.Fuse(), D.Strip(" ", 1, 0)])
    return _finish(fast, d, [tk.normalizers.Replace(" ", "▁")], prefix_lines=True)


@register_fast_tokenizer("char")
def char_fast(tok):
    from lmtie.data.tokenizers import char_of_symbol

    tk = _tokenizers()
    d = tok.dictionary
    vocab = dict(_specials(d))
    for i, sym in enumerate(d.symbols[d.nspecial:], start=d.nspecial):
        ch = char_of_symbol(sym)
        vocab.setdefault(ch if ch is not None and ch != "\n" else sym, i)
    fast = tk.Tokenizer(tk.models.BPE(vocab, [], unk_token=d.unk_word, fuse_unk=False))
    fast.decoder = tk.decoders.Fuse()
    return _finish(fast, d, [])


@register_fast_tokenizer("bytes")
def bytes_fast(tok):
    tk = _tokenizers()
    d = tok.dictionary
    vocab = {**_specials(d), **{sym: i for i, sym in enumerate(d.symbols) if i >= d.nspecial}}
    fast = tk.Tokenizer(tk.models.BPE(vocab, [], unk_token=d.unk_word, byte_fallback=True, fuse_unk=False))
    fast.decoder = tk.decoders.Sequence([tk.decoders.ByteFallback(), tk.decoders.Fuse()])
    return _finish(fast, d, [])


@register_fast_tokenizer("space")
def space_fast(tok):
    tk = _tokenizers()
    d = tok.dictionary
    vocab = {sym: i for i, sym in reversed(list(enumerate(d.symbols)))}  # the first id of a symbol, as index()
    fast = tk.Tokenizer(tk.models.WordLevel(vocab, unk_token=d.unk_word))
    fast.pre_tokenizer = tk.pre_tokenizers.WhitespaceSplit()
    return _finish(fast, d, [])


def fast_tokenizer(tokenizer):
    """The ``tokenizers.Tokenizer`` equivalent of an lmtie tokenizer, or a UserError naming the ones there are."""
    if tokenizer.name not in FAST_TOKENIZERS:
        raise UserError(f"the {tokenizer.name} tokenizer has no tokenizer.json equivalent; these have: "
                        f"{', '.join(FAST_TOKENIZERS)}")
    return FAST_TOKENIZERS[tokenizer.name](tokenizer)


def lmtie_tokenizer(ckpt):
    """The checkpoint's own tokenizer (None when it records none), its model file rebuilt from the stored bytes."""
    name = (ckpt.tokenizer or {}).get("name")
    if not name:
        return None
    cls = tokenizer_class(name)
    if cls.model_file is None:
        return cls.build(ckpt.dictionary)
    if ckpt.tokenizer_model is None:
        raise UserError(f"{ckpt.path}: the checkpoint lacks the model of its {name} tokenizer ({cls.model_file})")
    with tempfile.TemporaryDirectory() as tmp:  # build() reads the model file whole
        (Path(tmp) / cls.model_file).write_bytes(ckpt.tokenizer_model)
        return cls.build(ckpt.dictionary, Path(tmp) / cls.model_file)


def tokenizer_config(d, max_positions: int) -> dict:
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": d.eos_word, "eos_token": d.eos_word,
            "pad_token": d.pad_word, "unk_token": d.unk_word, "model_max_length": max_positions,
            "clean_up_tokenization_spaces": False, "add_bos_token": True}


def tokenizer_files(ckpt, config: dict, tokenizer=None) -> dict[str, bytes]:
    """The tokenizer files an export writes: lmtie's own (dict.txt and the tokenizer's model file), so an
    import restores the exact tokenizer, and ``tokenizer.json`` + ``tokenizer_config.json`` for HF.

    ``tokenizer`` is the checkpoint's (built by the caller); without one only dict.txt is written.
    """
    name = (ckpt.tokenizer or {}).get("name")
    if name == "hf" or ckpt.dictionary.nspecial == 0:  # imported from HF: its own tokenizer.json goes back
        return {"tokenizer.json": ckpt.tokenizer_model} if name == "hf" and ckpt.tokenizer_model is not None else {}
    files = {"dict.txt": ckpt.dictionary.to_text().encode("utf-8")}
    if name and ckpt.tokenizer_model is not None and tokenizer_class(name).model_file:
        files[tokenizer_class(name).model_file] = ckpt.tokenizer_model
    if tokenizer is not None:
        positions = int(config.get("n_positions") or config.get("max_position_embeddings") or 1024)
        files["tokenizer.json"] = fast_tokenizer(tokenizer).to_str(pretty=True).encode("utf-8")
        files["tokenizer_config.json"] = (json.dumps(tokenizer_config(ckpt.dictionary, positions), indent=2)
                                          + "\n").encode("utf-8")
    return files
