"""Incremental decoding, sampling filters and the lmtie-generate command."""

import re

import pytest
import torch

from lmtie.cli import generate as generate_cli
from lmtie.data import Dictionary
from lmtie.evaluation.generation import column_major_weights, filter_logits, generate
from lmtie.models import check_tie
from eval_helpers import WORDS, save_checkpoint, tiny_model, train_on_cycle

V = 40


@pytest.mark.parametrize("tied", [True, False])
def test_cached_and_uncached_greedy_decoding_give_identical_tokens(tied):
    model = tiny_model(V, tied=tied, max_positions=96)
    cycle = train_on_cycle(model, torch.arange(4, 16))  # 12 distinct ids: greedy output is a varied sequence
    prompt = [2, *cycle[:3].tolist()]
    cached = generate(model, prompt, 60, greedy=True, use_cache=True)
    uncached = generate(model, prompt, 60, greedy=True, use_cache=False)
    assert cached.shape == (1, 60)
    assert torch.equal(cached, uncached)
    assert len(set(cached[0].tolist())) > 5  # a real sequence, not one repeated id


def test_cache_gives_the_same_next_token_distribution_as_a_full_rerun():
    model = tiny_model(V)
    seq = torch.tensor([[2, 5, 6, 7, 8, 9]])
    cache = model.new_cache(1, 6)
    model(seq[:, :3], cache)
    step = [model(seq[:, i:i + 1], cache)[0, -1] for i in range(3, 6)][-1]
    full = model(seq)[0, -1]
    keep = torch.arange(V) != 1
    assert torch.allclose(step[keep], full[keep], atol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_column_major_decoding_layout_keeps_values_and_is_undone(tied):
    model = tiny_model(V, tied=tied)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seq = torch.tensor([[2, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        expected = model(seq)
        with column_major_weights(model):
            dec = model.decoder
            assert dec.embed_out.stride() == (1, dec.embed_out.size(0))  # (V, d) stored column-major
            assert dec.layers[0].ffn.fc1.weight.stride()[0] == 1
            assert (dec.embed_out is dec.embed_tokens.weight) == tied  # the tie is the same Parameter
            assert torch.allclose(model(seq), expected, atol=1e-5, rtol=1e-5)
    for k, v in model.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k]), k
    check_tie(model)


def test_column_major_layout_is_undone_when_decoding_fails():
    model = tiny_model(V)
    with pytest.raises(RuntimeError, match="stop"):
        with column_major_weights(model):
            raise RuntimeError("stop")
    assert all(p.is_contiguous() for p in model.parameters())


def test_sampling_is_reproducible_with_a_seed_and_varies_without():
    model = tiny_model(V)
    run = lambda seed: generate(model, [2], 30, top_k=10, generator=torch.Generator().manual_seed(seed),  # noqa: E731
                                num_samples=3)
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_top_k_one_and_a_tiny_top_p_are_greedy():
    model = tiny_model(V)
    greedy = generate(model, [2, 8], 20, greedy=True)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(generate(model, [2, 8], 20, top_k=1, generator=g), greedy)
    assert torch.equal(generate(model, [2, 8], 20, top_p=1e-6, generator=g), greedy)


def test_filter_logits_keeps_the_top_k_and_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    inf = float("-inf")
    assert filter_logits(logits, top_k=2)[0, 2:].tolist() == [inf, inf]
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p)).sum().item()  # noqa: E731
    assert (kept(0.5), kept(0.6), kept(0.8), kept(0.9), kept(1.0)) == (1, 2, 2, 3, 4)


def test_generation_stops_at_the_models_positions_and_says_so():
    model = tiny_model(V, max_positions=16)
    with pytest.warns(UserWarning, match="stopping after 12 new tokens"):
        out = generate(model, [2, 5, 6, 7], 50, greedy=True)
    assert out.shape == (1, 12)


def _checkpoint(tmp_path):
    d = Dictionary.build([" ".join(WORDS)])
    return save_checkpoint(tmp_path / "ck.safetensors", tiny_model(len(d)), d)


def test_generate_command_prints_samples_and_cache_does_not_change_greedy_text(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path))
    base = ["--path", ckpt, "--prompt", "the cat", "--max-new-tokens", "12", "--greedy"]
    assert generate_cli.main(base) == 0
    cached = capsys.readouterr().out
    assert generate_cli.main([*base, "--no-kv-cache"]) == 0
    uncached = capsys.readouterr().out
    text = lambda out: out.split("=== sample 0 ===\n")[1].split("\ngenerated")[0]  # noqa: E731
    assert text(cached) == text(uncached) and text(cached).startswith("the cat")
    assert "kv cache on" in cached and "kv cache off" in uncached


def test_bf16_decoding_keeps_a_bf16_cache_and_matches_a_bf16_rerun():
    model = tiny_model(V)
    train_on_cycle(model, torch.arange(4, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.new_cache(1, 8).kv.dtype == torch.bfloat16
        seq = torch.tensor([[2, 5, 6, 7]])
        cache = model.new_cache(1, 8)
        model(seq[:, :3], cache)
        step = model(seq[:, 3:], cache)[0, -1].float()
        full = model(seq)[0, -1].float()
        cached = generate(model, [2, 4, 5], 20, greedy=True)
    assert model.new_cache(1, 8).kv.dtype == torch.float32  # outside autocast: the weights' dtype
    keep = torch.arange(V) != 1
    assert torch.allclose(step[keep], full[keep], atol=0.1)  # bf16 rounding, not a different computation
    assert torch.equal(cached, generate(model, [2, 4, 5], 20, greedy=True))  # fp32 picks the same path here


def test_generate_command_samples_reproducibly_per_seed(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path))
    outs = []
    for seed in ("3", "3", "4"):
        assert generate_cli.main(["--path", ckpt, "--seed", seed, "--num-samples", "2", "--top-p", "0.9",
                                  "--max-new-tokens", "20"]) == 0
        outs.append(capsys.readouterr().out.split("generated")[0])
    assert outs[0] == outs[1] != outs[2]
    assert outs[0].count("=== sample") == 2


def test_prompt_with_unknown_symbols_maps_to_unk_with_a_warning(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path))
    with pytest.warns(UserWarning, match=r"--prompt: 2 symbol\(s\) the space tokenizer cannot encode .*<unk>"):
        assert generate_cli.main(["--path", ckpt, "--prompt", "the zebra sat quinoa", "--max-new-tokens", "3",
                                  "--greedy"]) == 0
    assert "the <unk> sat <unk>" in capsys.readouterr().out


def test_bad_generation_flags_are_user_errors(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path))
    assert generate_cli.main(["--path", ckpt, "--temperature", "0"]) == 2
    assert "--temperature 0.0 must be > 0" in capsys.readouterr().err
    assert generate_cli.main(["--path", ckpt, "--prompt", "the " * 70]) == 2
    assert "--prompt is 71 tokens but the model has only 64 positions" in capsys.readouterr().err


def test_generate_command_reports_the_tokens_it_generated_not_those_asked(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path))  # 64 positions; the prompt takes 59 (</s> and 58 words)
    with pytest.warns(UserWarning, match="stopping after 5 new tokens"):
        assert generate_cli.main(["--path", ckpt, "--prompt", "the " * 58, "--max-new-tokens", "1000000000",
                                  "--num-samples", "2", "--greedy"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("generated 10 new tokens (2 x 5) in "), last
    assert last.endswith("; 1,000,000,000 per sample were asked, but the model's positions ran out"), last
    tokens_per_s = float(re.search(r"\(([\d.]+) tokens/s", last).group(1))
    assert 0 < tokens_per_s < 1e7
    assert generate_cli.main(["--path", ckpt, "--max-new-tokens", "5", "--greedy"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("generated 5 new tokens in ")


def test_hub_generate_can_return_the_count_of_new_tokens(tmp_path):
    import lmtie

    lm = lmtie.load(_checkpoint(tmp_path), "cpu")
    text, n = lm.generate("the cat", max_new_tokens=7, greedy=True, return_count=True)
    assert n == 7 and text == lm.generate("the cat", max_new_tokens=7, greedy=True)
    with pytest.warns(UserWarning):
        texts, n = lm.generate("the " * 58, max_new_tokens=500, greedy=True, num_samples=2, return_count=True)
    assert n == 5 and len(texts) == 2
