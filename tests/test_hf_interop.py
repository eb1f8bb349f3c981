"""Hugging Face interop: lmtie -> HF (export) and HF -> lmtie (import), the tie preserved both ways.

Every model is tiny, random and built in the test; HF models are saved with ``save_pretrained`` into
tmp dirs. Nothing is downloaded.
"""

import json
import math

import pytest
import torch

import lmtie
from lmtie.checkpoint import Checkpoint, save
from lmtie.config import to_dict
from lmtie.errors import UserError
from lmtie.evaluation.generation import generate
from lmtie.interop import export_hf



def transformers_or_skip():
    """transformers (the ``hf`` and ``test`` extras); the tests that load into it skip without it."""
    return pytest.importorskip("transformers")

# (family, arch, model flags): every exported HF class, and the GPT-2 folds (scale, sinusoids)
VARIANTS = {
    "gpt2": ("transformer_lm", "transformer_lm_tiny", dict(decoder_learned_pos=True, no_scale_embedding=True,
                                                         activation_fn="gelu_accurate")),
    "gpt2-folded": ("transformer_lm", "transformer_lm_tiny", dict(activation_fn="relu")),  # sqrt(d) scale, sinusoids
    "llama": ("llama", "llama_tiny", {}),
    "qwen3": ("llama", "llama_tiny", dict(qk_norm=True)),
}
HF_CLASS = {"gpt2": "GPT2LMHeadModel", "gpt2-folded": "GPT2LMHeadModel", "llama": "LlamaForCausalLM",
            "qwen3": "Qwen3ForCausalLM"}


def small_dictionary(n: int = 60) -> lmtie.Dictionary:
    d = lmtie.Dictionary()
    for i in range(n):
        d.add_symbol(f"w{i}", n=1)
    d.pad_to_multiple_(8)
    return d


def random_model(family: str, arch: str, tied: bool, dictionary, **flags):
    """A tiny model whose every weight (norm gains and biases too) is perturbed, so no mapping hides."""
    cfg = lmtie.build_config(arch, vocab_size=len(dictionary), padding_idx=dictionary.pad(),
                             share_decoder_input_output_embed=tied, decoder_layers=2, decoder_embed_dim=32,
                             decoder_ffn_embed_dim=64, max_target_positions=64, **flags)
    model = lmtie.build_model(family, cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.input_embedding.weight[dictionary.pad()].zero_()  # as training keeps it
    return model.eval()


def save_checkpoint(path, model, dictionary, **extra):
    ckpt = Checkpoint(model.state_dict(), {"model_family": model.family, "model": to_dict(model.cfg)}, dictionary,
                      **extra)
    return save(path, ckpt)


def unmasked(logits: torch.Tensor, pad: int) -> torch.Tensor:
    keep = torch.ones(logits.size(-1), dtype=torch.bool)
    keep[pad] = False
    return logits[..., keep]


@pytest.fixture(params=[(v, t) for v in VARIANTS for t in (True, False)], ids=lambda p: f"{p[0]}-{'tied' if p[1] else 'untied'}")
def exported(request, tmp_path):
    transformers = transformers_or_skip()
    name, tied = request.param
    family, arch, flags = VARIANTS[name]
    torch.manual_seed(0)
    d = small_dictionary()
    model = random_model(family, arch, tied, d, **flags)
    export_hf(save_checkpoint(tmp_path / "ck.safetensors", model, d), tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    return name, tied, model, hf, d, tmp_path / "hf"


def test_export_loads_in_transformers_with_the_tie_as_trained(exported):
    name, tied, model, hf, d, out = exported
    assert type(hf).__name__ == HF_CLASS[name]
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied and hf.config.tie_word_embeddings is tied
    assert (hf.get_output_embeddings().weight is hf.get_input_embeddings().weight) is tied
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert ("lm_head.weight" in keys) is not tied  # the tied matrix is stored once
    assert config["pad_token_id"] == d.pad() and config["eos_token_id"] == d.eos() == config["bos_token_id"]
    assert json.loads((out / "generation_config.json").read_text())["suppress_tokens"] == [d.pad()]


def test_export_logits_match_within_1e_5(exported):
    name, tied, model, hf, d, _ = exported
    torch.manual_seed(1)
    x = torch.randint(d.nspecial, len(d), (4, 40))
    x[:, 0] = d.eos()  # lmtie starts every sequence with </s>
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    assert torch.isinf(ours[..., d.pad()]).all()
    assert (unmasked(ours, d.pad()) - unmasked(theirs, d.pad())).abs().max() < 1e-5
    if tied:  # the pad row is zero: HF gives <pad> logit 0, the documented difference
        assert theirs[..., d.pad()].abs().max() == 0


def test_export_perplexity_matches_with_the_pad_column_masked(exported):
    name, tied, model, hf, d, _ = exported
    torch.manual_seed(2)
    x = torch.randint(d.nspecial, len(d), (1, 64))
    x[0, 0] = d.eos()
    with torch.no_grad():
        theirs = hf(x).logits.double()
        ours = model(x).double()
    nll = lambda logits: -logits[0, :-1].log_softmax(-1).gather(-1, x[0, 1:, None]).mean()  # noqa: E731
    ppl_ours = math.exp(nll(ours))
    masked = theirs.index_fill(-1, torch.tensor([d.pad()]), float("-inf"))
    assert abs(math.exp(nll(masked)) / ppl_ours - 1) < 1e-6
    if tied:  # unmasked, exp(0) of probability goes to <pad>: perplexity rises
        assert math.exp(nll(theirs)) > ppl_ours


def test_export_greedy_generation_is_identical(exported):
    name, tied, model, hf, d, _ = exported
    prompt = [d.eos(), 10, 11, 12]
    ours = generate(model, prompt, 30, greedy=True)[0].tolist()
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False, eos_token_id=None)
    assert theirs[0, len(prompt):].tolist() == ours
    assert d.pad() not in ours


def test_export_then_import_gives_the_lmtie_model_back(exported):
    from lmtie.checkpoint import load_model

    name, tied, model, hf, d, out = exported
    back, ckpt = load_model(out)
    assert ckpt.dictionary == d and back.tied is tied and back.family == model.family
    if name != "gpt2-folded":  # the fold changes the weights (not the function) of that one
        theirs = back.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items() if k in theirs)
    x = torch.randint(d.nspecial, len(d), (2, 30))
    with torch.no_grad():
        assert (unmasked(model(x), d.pad()) - unmasked(back.eval()(x), d.pad())).abs().max() < 1e-5


def test_export_refuses_what_gpt2_cannot_hold_naming_the_flags(tmp_path):
    d = small_dictionary()
    model = random_model("transformer_lm", "transformer_lm_tiny", False, d, decoder_input_dim=16,
                         no_decoder_final_norm=True)
    path = save_checkpoint(tmp_path / "ck.safetensors", model, d)
    with pytest.raises(UserError, match=r"--decoder-input-dim 16 .*--no-decoder-final-norm") as e:
        export_hf(path, tmp_path / "hf")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "hf").exists()


def test_export_cli_refuses_a_non_empty_directory_and_replaces_it_with_overwrite(tmp_path, capsys):
    from lmtie.cli.export import main

    d = small_dictionary()
    path = save_checkpoint(tmp_path / "ck.safetensors", random_model("llama", "llama_tiny", True, d), d)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("x")
    assert main(["--path", str(path), "--out", str(tmp_path / "hf")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "hf" / "keep.txt").exists()
    assert main(["--path", str(path), "--out", str(tmp_path / "hf"), "--overwrite"]) == 0
    assert not (tmp_path / "hf" / "keep.txt").exists() and (tmp_path / "hf" / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors", "hf"]  # no temporary left


# --- import: HF -> lmtie ----------------------------------------------------------------------------
WORDS = [f"w{i}" for i in range(47)]  # with <unk>, <|endoftext|> and one more: a 50-token vocabulary


def word_tokenizer():
    """A tiny word-level tokenizer.json: ids 0..46 the words, 47 <unk>, 48 spare, 49 <|endoftext|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    vocab = {w: i for i, w in enumerate(WORDS)} | {"<unk>": 47, "<spare>": 48, "<|endoftext|>": 49}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return tok


def hf_model(kind: str, tied: bool, **extra):
    """A tiny random HF model (every weight perturbed), 50 tokens, 64 positions."""
    torch.manual_seed(3)
    shape = dict(vocab_size=50, tie_word_embeddings=tied, **extra)
    llama_shape = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=64, **shape)
    tf = transformers_or_skip()
    if kind == "gpt2":
        config = tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, bos_token_id=49, eos_token_id=49,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **shape)
        model = tf.GPT2LMHeadModel(config)
    elif kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(rope_theta=500.0, **llama_shape))
    else:
        model = tf.Qwen3ForCausalLM(tf.Qwen3Config(head_dim=8, bos_token_id=1, eos_token_id=2, **llama_shape))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def saved(model, path, tokenizer=True):
    model.save_pretrained(path)
    if tokenizer:
        word_tokenizer().save(str(path / "tokenizer.json"))
    return path


def st_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


IMPORTS = [("gpt2", True, {}), ("gpt2", False, {}), ("llama", True, {}), ("llama", False, dict(pad_token_id=48)),
           ("qwen3", True, {}), ("qwen3", False, {})]


@pytest.mark.parametrize("kind,tied,extra", IMPORTS, ids=[f"{k}-{'tied' if t else 'untied'}" for k, t, _ in IMPORTS])
def test_import_gives_the_hf_logits_and_exports_back_bit_identical(kind, tied, extra, tmp_path):
    from lmtie.checkpoint import load_model

    hf = hf_model(kind, tied, **extra)
    src = saved(hf, tmp_path / "src")
    model, ckpt = load_model(src)
    model.eval()
    assert model.tied is tied and model.family == ("transformer_lm" if kind == "gpt2" else "llama")
    pad = ckpt.dictionary.pad()
    assert pad == extra.get("pad_token_id", 50)  # no pad of its own: one zero row appended, masked
    x = torch.randint(0, 48, (3, 40))
    with torch.no_grad():
        ours, theirs = model(x)[..., :50], hf(x).logits
    keep = [i for i in range(50) if i != pad]
    assert (ours[..., keep] - theirs[..., keep]).abs().max() < 1e-5
    export_hf(src, tmp_path / "back")
    before, after = st_tensors(src), st_tensors(tmp_path / "back")
    assert sorted(before) == sorted(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert ("lm_head.weight" in after) is not tied
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied and config["vocab_size"] == 50
    assert (tmp_path / "back" / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()


def test_an_hf_directory_without_a_tokenizer_round_trips_too(tmp_path):
    from lmtie.checkpoint import load_model

    src = saved(hf_model("gpt2", True), tmp_path / "src", tokenizer=False)
    export_hf(src, tmp_path / "back")
    before, after = st_tensors(src), st_tensors(tmp_path / "back")
    assert sorted(before) == sorted(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "back" / "dict.txt").exists()  # HF ids, not an lmtie dictionary
    assert len(load_model(tmp_path / "back")[1].dictionary) == 51  # the same 50 + the added <pad>


def test_import_refuses_a_tied_config_whose_file_holds_two_matrices(tmp_path):
    from lmtie.checkpoint import load_model

    src = saved(hf_model("llama", False), tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    with pytest.raises(UserError, match="tie_word_embeddings=true but lm_head.weight differs"):
        load_model(src)


def test_import_never_unpickles(tmp_path):
    from lmtie.checkpoint import load_model

    src = saved(hf_model("gpt2", True), tmp_path / "src", tokenizer=False)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    with pytest.raises(UserError, match="pytorch_model.bin is a pickle, which lmtie never loads"):
        load_model(src)


def test_a_directory_that_is_no_hf_model_is_one_line_naming_what_to_pass(tmp_path, capsys):
    from lmtie.cli.eval_lm import main as eval_main

    (tmp_path / "save").mkdir()
    (tmp_path / "save" / "config.json").write_text("{}")
    (tmp_path / "save" / "checkpoint_best.safetensors").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    for directory, says in (("save", "an lmtie --save-dir, not a Hugging Face directory; pass one of its checkpoints"),
                            ("empty", "not a Hugging Face model directory (no config.json)")):
        assert eval_main(["--path", str(tmp_path / directory), "--input", str(tmp_path / "x.txt")]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1


def test_import_refuses_qwen2_biases_and_rope_scaling(tmp_path):
    from lmtie.checkpoint import load_model

    src = saved(hf_model("llama", True), tmp_path / "src", tokenizer=False)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "attention_bias": True}))
    with pytest.raises(UserError, match="biases on q/k/v"):
        load_model(src)
    (src / "config.json").write_text(json.dumps({**config, "rope_parameters": {"rope_type": "llama3", "rope_theta": 1.0}}))
    with pytest.raises(UserError, match="rope_type 'llama3'"):
        load_model(src)


def test_lmtie_load_scores_and_generates_an_hf_directory_with_its_tokenizer(tmp_path):
    hf = hf_model("gpt2", True)
    src = saved(hf, tmp_path / "src")
    lm = lmtie.load(str(src), device="cpu")
    text = "w1 w2 w3 w4\nw5 w6 w40\n"
    scores = lm.score(text)
    ids = [1, 2, 3, 4, 49, 5, 6, 40, 49]  # each line ends with </s>, here <|endoftext|>
    assert scores["token_ids"].tolist() == ids
    with torch.no_grad():  # HF log-probabilities of the same stream, which lmtie starts with </s>
        logp = hf(torch.tensor([[49] + ids[:-1]])).logits[0].log_softmax(-1)
    theirs = logp.gather(-1, torch.tensor(ids)[:, None])[:, 0]
    assert torch.allclose(scores["positional_scores"].float(), theirs, atol=1e-5)
    assert abs(scores["ppl"] / math.exp(-theirs.double().mean().item()) - 1) < 1e-6
    out = lm.generate("w1 w2", max_new_tokens=5, greedy=True)
    assert out.startswith("w1 w2")


def test_eval_lm_and_generate_take_an_hf_directory(tmp_path, capsys):
    from lmtie.cli import eval_lm, generate as generate_cli

    src = saved(hf_model("llama", True, bos_token_id=49, eos_token_id=49), tmp_path / "src")
    (tmp_path / "t.txt").write_text("w1 w2 w3\nw4 w5\n")
    assert eval_lm.main(["--path", str(src), "--input", str(tmp_path / "t.txt"), "--device", "cpu"]) == 0
    assert "Perplexity" in capsys.readouterr().out
    assert generate_cli.main(["--path", str(src), "--prompt", "w1", "--max-new-tokens", "4", "--greedy",
                              "--device", "cpu"]) == 0
    assert "generated 4 new tokens" in capsys.readouterr().out


# --- the exported tokenizer --------------------------------------------------------------------------
TRICKY_LINES = ["  indented line", "\ttab", "", "Ω unseen ✓ 你好", " ", "a  b", "trailing  ", "ﬁ Ａ é"]


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    """20,000 train lines to fit each tokenizer on, and 400 test lines (plus tricky ones) to compare on."""
    import lzma
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "data" / "shakespeare"
    read = lambda split: lzma.open(root / f"{split}.txt.xz", "rt", encoding="utf-8").read().splitlines()  # noqa: E731
    tmp = tmp_path_factory.mktemp("shakespeare")
    (tmp / "train.txt").write_text("\n".join(read("train")[:20000] + TRICKY_LINES[:3]) + "\n", encoding="utf-8")
    return tmp / "train.txt", read("test")[1000:1400] + TRICKY_LINES


@pytest.mark.parametrize("name", ["spm", "char", "bytes", "space"])
def test_exported_tokenizer_gives_lmtie_ids(name, shakespeare, tmp_path):
    from lmtie.data import PreprocessConfig, load_tokenizer, preprocess, tokenizer_identity

    train, lines = shakespeare
    data = preprocess(PreprocessConfig(trainpref=str(train), destdir=str(tmp_path / "bin"), tokenizer=name,
                                       spm_vocab_size=1000))
    ours = load_tokenizer(data)
    d = ours.dictionary
    info, blob = tokenizer_identity(data)
    model = random_model("llama", "llama_tiny", True, d)
    export_hf(save_checkpoint(tmp_path / "ck.safetensors", model, d, tokenizer=info, tokenizer_model=blob),
              tmp_path / "hf")
    theirs = transformers_or_skip().AutoTokenizer.from_pretrained(tmp_path / "hf")
    for line in lines:  # a line's ids, without the </s> lmtie ends it with
        assert theirs(line, add_special_tokens=False).input_ids == ours.encode(line + "\n")[:-1], repr(line)
    block = "\n".join(lines) + "\n"  # newlines are </s>; the default template starts with </s>, as lmtie does
    assert theirs(block).input_ids == [d.eos()] + ours.encode(block)
    assert (theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id) == (d.eos(), d.eos(), d.pad())
    assert lmtie.load(str(tmp_path / "hf"), device="cpu").encode(block).tolist() == ours.encode(block)


# --- vocabulary resize and lmtie-train --init-from ---------------------------------------------------
@pytest.mark.parametrize("family,arch", [("transformer_lm", "transformer_lm_tiny"), ("llama", "llama_tiny")])
@pytest.mark.parametrize("tied", [True, False])
def test_resize_keeps_the_tie_the_pad_row_and_every_old_row(family, arch, tied):
    from lmtie.interop import resize_vocab

    old = small_dictionary(60)
    new = lmtie.Dictionary()
    for sym in ["new0", *reversed(old.symbols[old.nspecial:]), "new1", "new2"]:  # moved ids, new symbols
        new.add_symbol(sym, n=1)
    new.pad_to_multiple_(8)
    model = random_model(family, arch, tied, old)
    grown = resize_vocab(model, old, new)
    assert grown.tied is tied and len(new) == grown.cfg.vocab_size
    assert (grown.output_weight is grown.input_embedding.weight) is tied
    assert sum(1 for k in grown.state_dict() if grown.state_dict()[k].size(0) == len(new)) == (1 if tied else 2)
    for weight, old_weight in ((grown.input_embedding.weight, model.input_embedding.weight),
                               (grown.output_weight, model.output_weight)):
        for sym in old.symbols[old.nspecial:]:
            if not sym.startswith("madeupword"):
                assert torch.equal(weight[new.index(sym)], old_weight[old.index(sym)])
    assert grown.input_embedding.weight[new.pad()].abs().max() == 0
    fresh = grown.input_embedding.weight[[new.index("new0"), new.index("new1"), new.index("new2")]]
    assert 0.05 < fresh.std() < 0.4  # the Embedding factory's N(0, 32^-0.5 = 0.18)
    keep = [k for k in model.state_dict() if model.state_dict()[k].size(0) != len(old)]
    assert all(torch.equal(model.state_dict()[k], grown.state_dict()[k]) for k in keep)


FINETUNE = ["--tokens-per-sample", "16", "--batch-size", "4", "--log-format", "none", "--warmup-updates", "1",
            "--lr", "1e-9", "--max-update", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def word_corpus(tmp_path_factory):
    from train_helpers import make_corpus

    return make_corpus(tmp_path_factory.mktemp("words"), lines=60)


def exported_on(words, tmp_path, family, arch, tied, **flags):
    """An lmtie model over ``words`` (a Dictionary) exported to tmp_path/hf; returns (model, dir)."""
    model = random_model(family, arch, tied, words, **flags)
    export_hf(save_checkpoint(tmp_path / "init.safetensors", model, words), tmp_path / "hf")
    return model, tmp_path / "hf"


def last_weights(save_dir):
    from safetensors.torch import load_file

    return {k[len("model."):]: v for k, v in load_file(str(save_dir / "checkpoint_last.safetensors")).items()
            if k.startswith("model.")}


def test_train_init_from_an_hf_directory_starts_from_its_weights(word_corpus, tmp_path):
    from lmtie.cli.train import main as train_main

    d = lmtie.Dictionary.load(word_corpus / "dict.txt")
    model, hf_dir = exported_on(d, tmp_path, "llama", "llama_tiny", True)
    assert train_main([str(word_corpus), "--arch", "llama_tiny", "--init-from", str(hf_dir), *FINETUNE,
                       "--save-dir", str(tmp_path / "ft")]) == 0
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["model_family"] == "llama" and saved["model"]["share_decoder_input_output_embed"] is True
    assert saved["model"]["decoder_embed_dim"] == 32  # the imported shape, not llama_tiny's 128
    after = last_weights(tmp_path / "ft")
    assert "lm_head.weight" not in after  # still one matrix
    assert all(torch.allclose(v, after[k], atol=1e-6) for k, v in model.state_dict().items())


def test_train_init_from_resizes_onto_the_data_vocabulary_keeping_the_tie(word_corpus, tmp_path):
    from lmtie.cli.train import main as train_main

    d = lmtie.Dictionary.load(word_corpus / "dict.txt")
    half = lmtie.Dictionary()
    for sym in d.symbols[d.nspecial:d.nspecial + 6]:
        half.add_symbol(sym, n=1)
    half.pad_to_multiple_(8)
    model, hf_dir = exported_on(half, tmp_path, "transformer_lm", "transformer_lm_tiny", True,
                                decoder_learned_pos=True, no_scale_embedding=True)
    assert train_main([str(word_corpus), "--init-from", str(hf_dir), *FINETUNE, "--save-dir", str(tmp_path / "ft")]) == 0
    emb = last_weights(tmp_path / "ft")["decoder.embed_tokens.weight"]
    assert emb.size(0) == len(d) and "decoder.embed_out" not in last_weights(tmp_path / "ft")
    for sym in half.symbols[half.nspecial:half.nspecial + 6]:
        assert torch.allclose(emb[d.index(sym)], model.input_embedding.weight[half.index(sym)], atol=1e-6)
    assert emb[d.pad()].abs().max() == 0


def test_train_init_from_refuses_another_family_and_an_unasked_untie(word_corpus, tmp_path, capsys):
    from lmtie.cli.train import main as train_main

    d = lmtie.Dictionary.load(word_corpus / "dict.txt")
    _, hf_dir = exported_on(d, tmp_path, "llama", "llama_tiny", True)
    common = [str(word_corpus), "--init-from", str(hf_dir), *FINETUNE]
    assert train_main([*common, "--save-dir", str(tmp_path / "a")]) == 2  # --arch's default is transformer_lm
    assert "holds a llama model but --arch gives a transformer_lm model" in capsys.readouterr().err
    assert train_main([*common, "--arch", "llama_tiny", "--no-share-decoder-input-output-embed",
                       "--save-dir", str(tmp_path / "b")]) == 2
    assert "pass --reset-output-projection to untie it" in capsys.readouterr().err
    assert train_main([*common, "--arch", "llama_tiny", "--no-share-decoder-input-output-embed",
                       "--reset-output-projection", "--save-dir", str(tmp_path / "c")]) == 0
    after = last_weights(tmp_path / "c")
    assert torch.allclose(after["lm_head.weight"], after["model.embed_tokens.weight"], atol=1e-5)  # a copy, now two
