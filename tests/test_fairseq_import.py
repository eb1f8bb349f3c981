"""``lmtie-import-fairseq``: fairseq ``transformer_lm`` checkpoints built in the test, imported exactly; pickled
code refused.

Each checkpoint is what fairseq's trainer writes, at tiny size: a dict with ``args`` (a Namespace) or
``cfg`` (plain dicts, fairseq >= 0.10) and ``model``, fairseq's state_dict key names and shapes,
``torch.save``'d. The reference forward below is written from fairseq's formulas, not from lmtie.
"""

import argparse
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

import lmtie
from lmtie.checkpoint import load_model
from lmtie.cli import eval_lm, import_fairseq as cli
from lmtie.errors import UserError
from lmtie.interop.fairseq_import import import_fairseq

PAD = 1


def dictionary(n: int = 37) -> lmtie.Dictionary:
    d = lmtie.Dictionary()
    for i in range(n):
        d.add_symbol(f"w{i}", n=100 - i)
    d.pad_to_multiple_(8)
    return d


def fairseq_args(**overrides) -> argparse.Namespace:
    """The model part of fairseq's args after ``base_lm_architecture`` (which forces pre-norm)."""
    a = dict(arch="transformer_lm", decoder_embed_dim=16, decoder_input_dim=16, decoder_output_dim=16,
             decoder_ffn_embed_dim=24, decoder_layers=2, decoder_attention_heads=2, decoder_learned_pos=False,
             decoder_normalize_before=True, no_decoder_final_norm=False, no_scale_embedding=False,
             share_decoder_input_output_embed=True, activation_fn="relu", dropout=0.1, attention_dropout=0.0,
             activation_dropout=0.0, relu_dropout=0.0, adaptive_input=False, adaptive_softmax_cutoff=None,
             character_embeddings=False, layernorm_embedding=False, no_token_positional_embeddings=False,
             tie_adaptive_weights=False, tokens_per_sample=12, max_target_positions=12, add_bos_token=False,
             data="data-bin/x", optimizer="adam", lr=[0.0005])
    a.update(overrides)
    return argparse.Namespace(**a)


def fairseq_state(args: argparse.Namespace, vocab: int, legacy_head: bool = False) -> dict:
    """Random weights under fairseq's names and shapes (embed_positions has max + padding_idx + 1 rows)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    d, d_in, d_out, ffn = args.decoder_embed_dim, args.decoder_input_dim, args.decoder_output_dim, \
        args.decoder_ffn_embed_dim
    embed = r(vocab, d_in)
    embed[PAD] = 0
    s = {"decoder.version": torch.tensor([3.0]), "decoder.embed_tokens.weight": embed}
    if args.decoder_learned_pos:
        s["decoder.embed_positions.weight"] = r(args.max_target_positions + PAD + 1, d)
    else:
        s["decoder.embed_positions._float_tensor"] = torch.tensor([1.0])
    for i in range(args.decoder_layers):
        p = f"decoder.layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s[f"{p}self_attn.{name}.weight"], s[f"{p}self_attn.{name}.bias"] = r(d, d), r(d)
        s[p + "fc1.weight"], s[p + "fc1.bias"] = r(ffn, d), r(ffn)
        s[p + "fc2.weight"], s[p + "fc2.bias"] = r(d, ffn), r(d)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            s[f"{p}{ln}.weight"], s[f"{p}{ln}.bias"] = 1 + r(d), r(d)
    if not args.no_decoder_final_norm:
        s["decoder.layer_norm.weight"], s["decoder.layer_norm.bias"] = 1 + r(d), r(d)
    if d_in != d:
        s["decoder.project_in_dim.weight"] = r(d, d_in)
    if d_out != d:
        s["decoder.project_out_dim.weight"] = r(d_out, d)
    head = embed if args.share_decoder_input_output_embed else r(vocab, d_out)
    s["decoder.embed_out" if legacy_head else "decoder.output_projection.weight"] = head
    return s


def sinusoids(positions: torch.Tensor, d: int) -> torch.Tensor:
    """fairseq's SinusoidalPositionalEmbedding at the given positions: sin half, then cos half."""
    half = d // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    angles = positions.float()[:, None] * freq[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def reference_logits(args: argparse.Namespace, s: dict, tokens: torch.Tensor) -> torch.Tensor:
    """fairseq's TransformerDecoder forward (eval mode, pre-norm), from its formulas, on (B, T) tokens."""
    d, heads = args.decoder_embed_dim, args.decoder_attention_heads
    B, T = tokens.shape
    x = s["decoder.embed_tokens.weight"][tokens] * (1.0 if args.no_scale_embedding else math.sqrt(d))
    if "decoder.project_in_dim.weight" in s:
        x = x @ s["decoder.project_in_dim.weight"].t()
    positions = PAD + 1 + torch.arange(T)  # make_positions: padding_idx + cumulative count of non-pads
    pos = s["decoder.embed_positions.weight"][positions] if args.decoder_learned_pos else sinusoids(positions, d)
    x = x + pos
    lin = lambda x, name: x @ s[name + ".weight"].t() + s[name + ".bias"]  # noqa: E731
    ln = lambda x, name: F.layer_norm(x, (d,), s[name + ".weight"], s[name + ".bias"], eps=1e-5)  # noqa: E731
    act = {"relu": F.relu, "gelu": F.gelu, "gelu_fast": lambda t: F.gelu(t, approximate="tanh")}[args.activation_fn]
    future = torch.triu(torch.full((T, T), float("-inf")), 1)
    for i in range(args.decoder_layers):
        p = f"decoder.layers.{i}."
        h = ln(x, p + "self_attn_layer_norm")
        q = lin(h, p + "self_attn.q_proj") * (d // heads) ** -0.5
        k, v = lin(h, p + "self_attn.k_proj"), lin(h, p + "self_attn.v_proj")
        q, k, v = (t.view(B, T, heads, d // heads).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) + future, dim=-1) @ v
        x = x + lin(a.transpose(1, 2).reshape(B, T, d), p + "self_attn.out_proj")
        x = x + lin(act(lin(ln(x, p + "final_layer_norm"), p + "fc1")), p + "fc2")
    if not args.no_decoder_final_norm:
        x = ln(x, "decoder.layer_norm")
    if "decoder.project_out_dim.weight" in s:
        x = x @ s["decoder.project_out_dim.weight"].t()
    head = s.get("decoder.output_projection.weight", s.get("decoder.embed_out"))
    return x @ head.t()


def write_fairseq(tmp_path, args, state, cfg_style=False):
    """A checkpoint as fairseq's trainer saves it (args, or cfg as plain dicts), and its dict.txt."""
    d = dictionary()
    d.save(tmp_path / "dict.txt")
    if cfg_style:
        model = dict(vars(args), _name=args.arch, max_target_positions="${task.tokens_per_sample}")
        model.pop("arch")
        ckpt = {"args": None, "cfg": {"model": model, "task": {"_name": "language_modeling", "tokens_per_sample":
                                                                 args.tokens_per_sample}}}
    else:
        ckpt = {"args": args}
    ckpt.update(model=state, optimizer_history=[{"criterion_name": "CrossEntropyCriterion", "num_updates": 5}],
                extra_state={"epoch": 1, "previous_best": 7.5}, last_optimizer_state={"state": {}})
    torch.save(ckpt, tmp_path / "checkpoint_best.pt")
    return tmp_path / "checkpoint_best.pt", d


CASES = {  # name -> (args overrides, legacy embed_out key, cfg-style checkpoint)
    "tied-sinusoidal": (dict(), False, False),
    "untied-learned-legacy-embed_out": (dict(share_decoder_input_output_embed=False, decoder_learned_pos=True,
                                             activation_fn="gelu"), True, False),
    "untied-projections-unscaled": (dict(share_decoder_input_output_embed=False, decoder_input_dim=8,
                                         decoder_output_dim=12, no_scale_embedding=True), False, False),
    "tied-input-projection-scaled-cfg": (dict(decoder_input_dim=8, decoder_output_dim=8, activation_fn="gelu_fast",
                                              decoder_learned_pos=True), False, True),
    "tied-no-final-norm": (dict(no_decoder_final_norm=True), False, False),
}


@pytest.mark.parametrize("case", CASES)
def test_import_gives_fairseqs_logits(case, tmp_path):
    overrides, legacy, cfg_style = CASES[case]
    args = fairseq_args(**overrides)
    d = dictionary()
    state = fairseq_state(args, len(d), legacy_head=legacy)
    path, _ = write_fairseq(tmp_path, args, state, cfg_style)
    out = import_fairseq(path, tmp_path / "lmtie")
    model, ckpt = load_model(out)
    model.eval()
    assert ckpt.dictionary == d and (tmp_path / "lmtie" / "dict.txt").read_text() == (tmp_path / "dict.txt").read_text()
    assert model.cfg.share_decoder_input_output_embed == args.share_decoder_input_output_embed
    tokens = torch.randint(4, len(d), (3, args.tokens_per_sample), generator=torch.Generator().manual_seed(1))
    tokens[:, 0] = d.eos()
    with torch.no_grad():
        ours, ref = model(tokens), reference_logits(args, state, tokens)
    keep = torch.arange(len(d)) != PAD
    torch.testing.assert_close(ours[..., keep], ref[..., keep], atol=2e-5, rtol=1e-5)
    assert torch.isinf(ours[..., PAD]).all()  # lmtie masks <pad>, which fairseq never predicts as a target
    assert (model.output_weight is model.input_embedding.weight) == args.share_decoder_input_output_embed


def test_a_reduce_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"args": Payload(), "model": {}}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match=r"posix\.system|nt\.system"):
        import_fairseq(tmp_path / "evil.pt", tmp_path / "out", tmp_path / "evil.pt")
    assert not marker.exists() and not (tmp_path / "out").exists()


class Gadget:  # any class but argparse.Namespace: refused by name, never constructed
    def __init__(self):
        self.x = 1


def test_any_other_class_is_refused_naming_it(tmp_path, capsys):
    torch.save({"args": fairseq_args(), "model": {}, "extra": Gadget()}, tmp_path / "c.pt")
    assert cli.main([str(tmp_path / "c.pt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmtie-import-fairseq: error:") and err.count("\n") == 1
    assert "test_fairseq_import.Gadget" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"junk\n", b"", b"\x80\x02}q\x00", os.urandom(64), b"PK\x03\x04" + b"\0" * 40])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys, content):
    (tmp_path / "c.pt").write_bytes(content)
    assert cli.main([str(tmp_path / "c.pt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmtie-import-fairseq: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


REFUSED = {  # args overrides / extra keys -> what the message must name
    "post-norm": (dict(decoder_normalize_before=False), {}, "decoder_normalize_before"),
    "adaptive softmax": (dict(adaptive_softmax_cutoff="20000,60000"), {}, "adaptive_softmax_cutoff"),
    "embedding layernorm": (dict(layernorm_embedding=True), {}, "layernorm_embedding"),
    "activation": (dict(activation_fn="tanh"), {}, "activation_fn='tanh'"),
    "arch": (dict(arch="transformer_wmt_en_de"), {}, "transformer_wmt_en_de"),
    "unknown key": (dict(), {"decoder.layers.0.self_attn.bias_k": torch.zeros(1, 1, 16)}, "self_attn.bias_k"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_lmtie_cannot_express_is_refused_by_name(case, tmp_path, capsys):
    overrides, extra, named = REFUSED[case]
    args = fairseq_args(**overrides)
    path, _ = write_fairseq(tmp_path, args, {**fairseq_state(args, len(dictionary())), **extra})
    assert cli.main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_dictionary_of_another_size_is_refused_and_an_existing_out_kept(tmp_path, capsys):
    args = fairseq_args()
    path, _ = write_fairseq(tmp_path, args, fairseq_state(args, len(dictionary())))
    dictionary(50).save(tmp_path / "other.txt")
    assert cli.main([str(path), "--out", str(tmp_path / "out"), "--dict", str(tmp_path / "other.txt")]) == 2
    assert "--dict" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    assert cli.main([str(path), "--out", str(tmp_path / "full")]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert os.listdir(tmp_path / "full") == ["keep"]


def test_eval_lm_scores_the_import_as_the_reference_does(tmp_path, capsys):
    args = fairseq_args(share_decoder_input_output_embed=False)
    d = dictionary()
    state = fairseq_state(args, len(d))
    path, _ = write_fairseq(tmp_path, args, state)
    assert cli.main([str(path), "--out", str(tmp_path / "lmtie")]) == 0
    assert "wrote" in capsys.readouterr().out
    line = " ".join(f"w{i}" for i in range(5, 15))  # 10 words + </s> = 11 tokens: one window of 12
    (tmp_path / "t.txt").write_text(line + "\n")
    assert eval_lm.main(["--path", str(tmp_path / "lmtie" / "checkpoint_best.safetensors"), "--input",
                         str(tmp_path / "t.txt"), "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ids = torch.tensor([[d.eos()] + [d.index(w) for w in line.split()] + [d.eos()]])
    logits = reference_logits(args, state, ids[:, :-1])
    logits[..., PAD] = float("-inf")  # as lmtie masks it
    nll = -torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).mean()
    assert metrics["tokens"] == 11 and math.isclose(metrics["ppl"], math.exp(nll), rel_tol=1e-5)


def test_eval_lm_scores_a_data_bin_split_with_the_import(tmp_path, capsys):
    from train_helpers import make_corpus

    data = make_corpus(tmp_path, lines=20)
    args = fairseq_args(tokens_per_sample=16, max_target_positions=16)
    d = lmtie.Dictionary.load(data / "dict.txt")
    torch.save({"args": args, "model": fairseq_state(args, len(d))}, tmp_path / "checkpoint_best.pt")
    assert cli.main([str(tmp_path / "checkpoint_best.pt"), "--out", str(tmp_path / "lmtie"),
                     "--dict", str(data / "dict.txt")]) == 0
    assert eval_lm.main([str(data), "--path", str(tmp_path / "lmtie" / "checkpoint_best.safetensors"),
                         "--gen-subset", "valid", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["tokens"] > 0 and math.isfinite(metrics["ppl"])
