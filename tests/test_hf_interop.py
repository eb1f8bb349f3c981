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

transformers = pytest.importorskip("transformers")

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
