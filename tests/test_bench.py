"""scripts/bench.py end to end on the smallest reference config (needs the ``bench`` extra).

Marked slow (about a minute): `pytest -m slow`; the GPU variant: `pytest -m gpu`.
Speed targets are not asserted here: they live in the benchmark's own output.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"train tokens/s", "train MFU", "eval tokens/s", "generate tokens/s, KV cache",
        "generate tokens/s, no cache", "generate: cache / no cache"}


def run_bench(tmp_path, *flags):
    pytest.importorskip("transformers", reason="the HF peer needs the bench extra: pip install -e .[bench]")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--configs", "CFG-CHAR", "--steps", "1",
                           "--repeats", "1", "--new-tokens", "8", "--gen-repeats", "1", "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def check_report(report: dict, stdout: str) -> None:
    (result,) = report["results"]
    for system in ("lmtie", "hf"):
        assert result["train"][system]["tokens_per_s"] > 0 and result["eval"][system]["tokens_per_s"] > 0
        assert result["memory"][system]["added_mb"] > 0
        assert result["generate_cache"][system]["tokens_per_s"] > 0
    metrics = {line.split(" | ")[2] for line in report["table"].splitlines()[2:]}
    assert ROWS <= metrics and any(m.startswith("train memory MB") for m in metrics)
    assert report["table"] in stdout and report["machine"]["matmul_peak_gflops"] > 0


@pytest.mark.slow
def test_bench_runs_cpu_config_with_profile(tmp_path):
    report, stdout = run_bench(tmp_path, "--device", "cpu", "--profile")
    check_report(report, stdout)
    assert "profile of 2 training updates lmtie" in stdout and "profile of evaluation hf" in stdout
    assert "profile of 64 cached generation steps lmtie" in stdout


@pytest.mark.slow
def test_bench_llama_family_against_hf_llama(tmp_path):
    report, stdout = run_bench(tmp_path, "--device", "cpu", "--family", "llama")
    check_report(report, stdout)
    assert report["results"][0]["family"] == "llama" and "HF Llama" in report["table"]


@pytest.mark.slow
def test_bench_bf16_compiled(tmp_path):
    report, stdout = run_bench(tmp_path, "--device", "cpu", "--bf16", "--compile")
    check_report(report, stdout)
    assert report["machine"]["precision"] == "bf16 autocast" and report["machine"]["compile"] is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bench_on_gpu(tmp_path):
    report, stdout = run_bench(tmp_path, "--device", "cuda", "--bf16")
    check_report(report, stdout)
    assert report["machine"]["gpu"] and "peak CUDA memory" in report["table"]


def test_cuda_refused_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--device", "cuda",
                           "--out", str(tmp_path / "b.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--device cuda: CUDA is not available" in proc.stderr
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow
def test_bench_train_runs_the_three_systems(tmp_path):
    pytest.importorskip("accelerate", reason="HF Trainer needs the bench extra: pip install -e .[bench]")
    out = tmp_path / "bench_train.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_train.py"), "--configs", "CFG-CHAR",
                           "--rounds", "1", "--steps", "9", "--window", "3", "--skip-windows", "1",
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = json.loads(out.read_text())["results"]
    for system in ("lmtie-train", "bare-loop", "hf-trainer"):
        s = result["systems"][system]
        assert s["tokens_per_s"] > 0 and s["peak_rss_mb"] > 0
    assert "trainer overhead" in proc.stdout
