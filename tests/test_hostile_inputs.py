"""A hostile user's inputs: damaged checkpoints, damaged data-bins, out-of-range flags.

Every case must end the same way: exit code 2, exactly one line on stderr that starts with
``lmtie-<tool>: error:``, no traceback, and no file changed (the save dir, the data-bin, the
checkpoint, the results file: their bytes are compared before and after). ``lmtie.load`` raises
:class:`lmtie.errors.UserError` for every damaged checkpoint, never another type.

Fast by construction: one tiny data-bin and one tiny trained checkpoint per module, the CLIs
called in-process through their ``main(argv)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import lmtie
from lmtie.cli import ablate as cli_ablate
from lmtie.cli import eval_lm as cli_eval
from lmtie.cli import generate as cli_generate
from lmtie.cli import preprocess as cli_preprocess
from lmtie.cli import train as cli_train
from lmtie.data.indexed_dataset import MMapIndexedDataset
from lmtie.errors import UserError
from train_helpers import TINY, make_corpus

TOOLS = {"train": cli_train.main, "eval-lm": cli_eval.main, "generate": cli_generate.main,
         "preprocess": cli_preprocess.main, "ablate": cli_ablate.main}


# --- fixtures: one data-bin and one trained checkpoint for the whole module --------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    data = make_corpus(root, lines=60)
    rc = cli_train.main([str(data), *TINY, "--max-update", "2", "--save-dir", str(root / "ck")])
    assert rc == 0
    return {"root": root, "data": data, "ck": root / "ck", "base": root / "ck" / "checkpoint_last.safetensors"}


def snapshot(*paths: Path) -> dict[str, str]:
    """sha256 of every file under ``paths`` (a missing path is recorded as missing). Lock files are left out:
    they are the save dir's / destdir's lock, which a refused run may create and leaves empty."""
    out = {}
    for top in paths:
        if not top.exists():
            out[str(top)] = "<missing>"
        elif top.is_file():
            out[str(top)] = hashlib.sha256(top.read_bytes()).hexdigest()
        else:
            for p in sorted(top.rglob("*")):
                if p.is_file() and not p.name.endswith(".lock"):
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(capsys, tool: str, argv: list[str], *watched: Path, match: str | None = None) -> str:
    """Run ``lmtie-<tool> argv`` in-process; assert exit 2, one error line, no traceback, nothing changed."""
    capsys.readouterr()
    before = snapshot(*watched)
    rc = TOOLS[tool]([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}, stderr: {err[-2000:]}"
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{err[-2000:]}"
    assert lines[0].startswith(f"lmtie-{tool}: error: "), lines[0]
    assert "Traceback" not in err
    assert snapshot(*watched) == before, "a refused run changed files"
    if match is not None:
        assert match in lines[0], lines[0]
    return lines[0]


# --- hostile checkpoints ---------------------------------------------------------------------------------
def rewrite(base: Path, dst: Path, meta=None, tensors=None) -> Path:
    """A copy of ``base`` with its header metadata and/or tensors changed by the given functions."""
    with safe_open(str(base), framework="pt") as f:
        m, t = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    if meta is not None:
        meta(m)
    if tensors is not None:
        tensors(t)
    save_file(t, str(dst), metadata=m)
    return dst


def config(change):
    def edit(m):
        c = json.loads(m["config"])
        change(c)
        m["config"] = json.dumps(c)
    return edit


def model_cfg(**kw):
    return config(lambda c: c["model"].update(kw))


def header(key, value):
    def edit(m):
        if value is None:
            m.pop(key)
        else:
            m[key] = value
    return edit


def train_state(**kw):
    def edit(m):
        s = json.loads(m["train_state"])
        s.update(kw)
        m["train_state"] = json.dumps(s)
    return edit


def tensor(name, value=None, drop=False):
    def edit(t):
        if drop:
            t.pop(name)
        else:
            t[name] = value(t[name]) if callable(value) else value
    return edit


def drop_dictionary_line(m):
    m["dictionary"] = "".join(m["dictionary"].splitlines(keepends=True)[:-1])


# (id, header edit, tensor edit, a fragment of the expected message)
CONFIG_CASES = [
    ("negative-dim", model_cfg(decoder_embed_dim=-32), None, "--decoder-embed-dim -32: must be >= 1"),
    ("ffn-1e12", model_cfg(decoder_ffn_embed_dim=10**12), None, "--decoder-ffn-embed-dim 1000000000000"),
    ("positions-1e11", model_cfg(max_target_positions=10**11), None, "--max-target-positions 100000000000"),
    ("ffn-not-the-file's", model_cfg(decoder_ffn_embed_dim=4096), None, "has shape [64, 32] but the saved config"),
    ("layers-not-the-file's", model_cfg(decoder_layers=3), None, "the file lacks model.decoder.layers.1"),
    ("positions-table-2GiB", model_cfg(max_target_positions=2**24), None, "GiB of derived tables"),
    ("zero-heads", model_cfg(decoder_attention_heads=0), None, "--decoder-attention-heads 0"),
    ("dim-as-string", model_cfg(decoder_embed_dim="32"), None, "--decoder-embed-dim '32': must be an integer"),
    ("dim-as-float", model_cfg(decoder_embed_dim=32.5), None, "must be an integer"),
    ("dropout-nan", model_cfg(dropout=float("nan")), None, "--dropout nan: must be a finite number"),
    ("unknown-activation", model_cfg(activation_fn="swish9"), None, "is not one of"),
    ("tie-flag-a-string", model_cfg(share_decoder_input_output_embed="yes"), None, "expected true or false"),
    ("unknown-model-key", model_cfg(bogus=1), None, "unknown config keys ['bogus']"),
    ("unknown-section", config(lambda c: c.update(extras={})), None, "unknown config section"),
    ("unknown-data-key", config(lambda c: c["data"].update(bogus=1)), None, "saved data config is invalid"),
    ("data-tokens-a-string", config(lambda c: c["data"].update(tokens_per_sample="16")), None,
     "--tokens-per-sample '16'"),
    ("model-section-a-list", config(lambda c: c.update(model=[1, 2])), None, "no 'model' section"),
    ("no-model-section", config(lambda c: c.pop("model")), None, "no 'model' section"),
    ("unknown-family", config(lambda c: c.update(model_family="rnn_lm")), None, "model family 'rnn_lm' is unknown"),
    ("family-not-a-string", config(lambda c: c.update(model_family=[1])), None, "not a family name"),
    ("config-not-json", header("config", "{not json"), None, "header 'config' is not valid JSON"),
    ("config-a-json-list", header("config", "[1, 2]"), None, "header 'config' is a JSON list"),
    ("no-config", header("config", None), None, "the header has no 'config'"),
    ("no-dictionary", header("dictionary", None), None, "the header has no 'dictionary'"),
    ("dictionary-malformed", header("dictionary", "the\n"), None, "malformed line"),
    ("dictionary-one-short", drop_dictionary_line, None, "model vocabulary 24 != its dictionary's 23"),
    ("padding-idx-moved", model_cfg(padding_idx=0), None, "padding_idx 0 is not its dictionary's <pad>"),
    ("tokenizer-a-list", header("tokenizer", "[]"), None, "header 'tokenizer' is a JSON list"),
    ("train-state-not-json", header("train_state", "{"), None, "header 'train_state' is not valid JSON"),
    ("optim-groups-an-object", header("optim_groups", "{}"), None, "header 'optim_groups' is a JSON dict"),
    ("weight-wrong-shape", None, tensor("model.decoder.layers.0.ffn.fc1.weight", torch.zeros(64, 31)),
     "has shape [64, 31]"),
    ("weight-integer", None, tensor("model.decoder.layers.0.ffn.fc1.weight", lambda t: t.long()), "not floating"),
    ("weight-missing", None, tensor("model.decoder.layers.0.ffn.fc1.weight", drop=True),
     "the file lacks model.decoder.layers.0.ffn.fc1.weight"),
    ("weight-extra", None, tensor("model.decoder.extra", torch.zeros(3)), "has unexpected model.decoder.extra"),
    ("tokenizer-model-floats", None, tensor("tokenizer.model", torch.zeros(4)), "not the bytes of a tokenizer"),
]


@pytest.fixture(scope="module")
def hostile_checkpoints(world):
    d = world["root"] / "hostile-ckpts"
    d.mkdir()
    return {name: rewrite(world["base"], d / f"{name}.safetensors", meta, tens)
            for name, meta, tens, _ in CONFIG_CASES}


@pytest.mark.parametrize("name,match", [(c[0], c[3]) for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_damaged_checkpoint_is_one_line_everywhere(world, hostile_checkpoints, capsys, tmp_path, name, match):
    path = hostile_checkpoints[name]
    with pytest.raises(UserError) as e:
        lmtie.load(path, device="cpu")
    assert str(path) in str(e.value) and match in str(e.value), str(e.value)
    watched = (path, world["data"])
    refused(capsys, "eval-lm", [world["data"], "--path", path, "--gen-subset", "valid"], *watched, match=match)
    refused(capsys, "generate", ["--path", path, "--max-new-tokens", "2"], *watched, match=match)
    # the same file as the checkpoint_last a training run would resume from
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    shutil.copy(path, save_dir / "checkpoint_last.safetensors")
    for extra in ("metrics.jsonl", "config.json"):
        shutil.copy(world["ck"] / extra, save_dir / extra)
    refused(capsys, "train", [world["data"], *TINY, "--max-update", "4", "--save-dir", save_dir], save_dir,
            world["data"])


# damage only what encodes raw text: loading, scoring and generating refuse it (a resume takes its tokenizer from
# the data-bin, so it is not affected)
TOKENIZER_CASES = [
    ("tokenizer-unknown", header("tokenizer", json.dumps({"name": "bogus"})), None,
     "the checkpoint's tokenizer 'bogus' is not one this lmtie knows"),
    ("spm-model-garbage", header("tokenizer", json.dumps({"name": "spm"})),
     tensor("tokenizer.model", torch.zeros(10, dtype=torch.uint8)), "tokenizer model stored in the checkpoint"),
    ("spm-model-missing", header("tokenizer", json.dumps({"name": "spm"})), None, "lacks the model of its spm"),
]


@pytest.mark.parametrize("name,meta,tens,match", TOKENIZER_CASES, ids=[c[0] for c in TOKENIZER_CASES])
def test_damaged_tokenizer_is_one_line_and_names_the_checkpoint(world, capsys, tmp_path, name, meta, tens, match):
    path = rewrite(world["base"], tmp_path / "c.safetensors", meta, tens)
    with pytest.raises(UserError, match=match) as e:
        lmtie.load(path, device="cpu")
    assert str(e.value).startswith(str(path)) and "/tmp" not in str(e.value)[len(str(path)):]
    refused(capsys, "eval-lm", [world["data"], "--path", path, "--gen-subset", "valid"], path, world["data"],
            match=match)
    refused(capsys, "generate", ["--path", path], path, match=match)


# resume-only damage: the model is fine (so lmtie.load works), the training state is not
RESUME_CASES = [
    ("step-a-string", train_state(step="abc"), None, "train_state 'step' is 'abc', not an integer >= 0"),
    ("step-negative", train_state(step=-4), None, "train_state 'step' is -4"),
    ("epoch-zero", train_state(epoch=0), None, "train_state 'epoch' is 0, not an integer >= 1"),
    ("epoch-a-list", train_state(epoch=[1]), None, "train_state 'epoch' is [1]"),
    ("seconds-nan", train_state(train_seconds=float("nan")), None, "not a finite number >= 0"),
    ("best-loss-a-string", train_state(best_valid_loss="low"), None, "train_state 'best_valid_loss'"),
    ("digest-a-number", train_state(data_digest=5), None, "train_state 'data_digest' is 5, not a str"),
    ("python-rng-garbage", train_state(python_rng=[1, 2]), None, "'python_rng' is not a Python RNG state"),
    ("numpy-rng-garbage", train_state(numpy_rng=["MT19937", [-1, 2], 0]), None, "'numpy_rng' is not a NumPy RNG"),
    ("torch-rng-missing", None, tensor("rng.torch", drop=True), "rng.torch is missing"),
    ("torch-rng-short", None, tensor("rng.torch", lambda t: t[:100].clone()), "rng.torch is torch.uint8 of shape"),
    ("optim-slot-wrong-shape", None, tensor("optim.decoder.layers.0.ffn.fc1.weight.exp_avg", torch.zeros(3)),
     "optim.decoder.layers.0.ffn.fc1.weight.exp_avg is torch.float32 of shape [3]"),
    ("optim-name-without-slot", None, tensor("optim.x", torch.zeros(1)), "is not named optim.<parameter>.<slot>"),
    ("optim-step-nan", None, tensor("optim.decoder.layers.0.ffn.fc1.weight.step", torch.tensor(float("nan"))),
     "optim.decoder.layers.0.ffn.fc1.weight.step"),
]


@pytest.mark.parametrize("name,meta,tens,match", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_damaged_training_state_is_refused_before_anything_is_written(world, capsys, tmp_path, name, meta, tens,
                                                                      match):
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    rewrite(world["base"], save_dir / "checkpoint_last.safetensors", meta, tens)
    for extra in ("metrics.jsonl", "config.json"):
        shutil.copy(world["ck"] / extra, save_dir / extra)
    line = refused(capsys, "train", [world["data"], *TINY, "--max-update", "4", "--save-dir", save_dir], save_dir,
                   world["data"], match=match)
    assert "--reset-optimizer" in line or name == "optim-name-without-slot"
    lmtie.load(save_dir / "checkpoint_last.safetensors", device="cpu")  # the weights themselves are fine


# files that are not checkpoints at all (the refusals that held; kept, one test each)
def _pickle_with_code(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Evil())


def _torch_zip(path: Path) -> bytes:
    torch.save({"model": torch.zeros(2)}, path)
    return path.read_bytes()


def _offsets_past_end() -> bytes:
    head = json.dumps({"__metadata__": {"format": "lmtie-checkpoint"},
                       "model.w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    return struct.pack("<Q", len(head)) + head + b"\0" * 16


NOT_CHECKPOINTS = {
    "empty": lambda tmp, base: b"",
    "zeros": lambda tmp, base: b"\0" * 100,
    "pickle": lambda tmp, base: pickle.dumps({"a": 1}),
    "pickle-with-code": lambda tmp, base: _pickle_with_code(tmp / "pwned"),
    "torch-zip": lambda tmp, base: _torch_zip(tmp / "zip.pt"),
    "truncated": lambda tmp, base: base.read_bytes()[: base.stat().st_size // 2],
    "header-length-2^60": lambda tmp, base: struct.pack("<Q", 2**60) + b"{}",
    "offsets-past-end": lambda tmp, base: _offsets_past_end(),
    "safetensors-not-lmtie": lambda tmp, base: _plain_safetensors(tmp / "plain.safetensors"),
}


def _plain_safetensors(path: Path) -> bytes:
    save_file({"w": torch.zeros(2)}, str(path))
    return path.read_bytes()


@pytest.mark.parametrize("kind", list(NOT_CHECKPOINTS))
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_file_that_is_not_an_lmtie_checkpoint_is_refused_and_never_executed(world, capsys, tmp_path, kind,
                                                                            suffix):
    content = NOT_CHECKPOINTS[kind](tmp_path, world["base"])
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(content)
    with pytest.raises(UserError, match="lmtie checkpoint"):
        lmtie.load(path, device="cpu")
    refused(capsys, "eval-lm", [world["data"], "--path", path, "--gen-subset", "valid"], path,
            match="lmtie checkpoint")
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    refused(capsys, "train", [world["data"], *TINY, "--save-dir", save_dir, "--restore-file", path], save_dir, path,
            match="lmtie checkpoint")
    assert not (tmp_path / "pwned").exists()


# --- hostile data-bins ---------------------------------------------------------------------------------------
def _truncate(name):
    def edit(d: Path):
        b = (d / name).read_bytes()
        (d / name).write_bytes(b[: len(b) // 2])
    return edit


def _id_out_of_range(split, value, position=3):
    def edit(d: Path):
        ds = MMapIndexedDataset(d / split)
        dtype = ds.dtype
        del ds
        ids = np.fromfile(d / f"{split}.bin", dtype=dtype)
        ids[position] = value
        ids.tofile(d / f"{split}.bin")
    return edit


def _negative_line(split):
    def edit(d: Path):
        b = bytearray((d / f"{split}.idx").read_bytes())
        b[26:30] = struct.pack("<i", -5)
        (d / f"{split}.idx").write_bytes(bytes(b))
    return edit


def _write(name, content):
    def edit(d: Path):
        (d / name).write_bytes(content)
    return edit


def _append(name, content):
    def edit(d: Path):
        with open(d / name, "ab") as f:
            f.write(content)
    return edit


def _edit_manifest(d: Path, splits=None, words=None):
    m = json.loads((d / "manifest.json").read_text())
    if splits is not None:
        m["splits"] = splits
    if words is not None:
        m["splits"]["valid"]["words"] = words
    (d / "manifest.json").write_text(json.dumps(m))


DATA_CASES = [
    # (id, tool, damage, expected fragment)
    ("train-idx-truncated", "train", _truncate("train.idx"), "train.idx: 373 bytes, but its header describes"),
    ("valid-idx-truncated", "eval-lm", _truncate("valid.idx"), "the index is truncated or damaged"),
    ("train-idx-negative-line", "train", _negative_line("train"), "a line of negative length"),
    ("train-idx-bad-magic", "train", _write("train.idx", b"NOTANIDX" + b"\0" * 40), "not a fairseq mmap index"),
    ("train-bin-extra-bytes", "train", _append("train.bin", b"\0\0"), "the split is damaged"),
    ("dict-empty", "train", _write("dict.txt", b""), "no symbols besides the 4 special ones"),
    ("dict-not-utf8", "train", _write("dict.txt", b"\xff\xfe 3\n"), "not UTF-8"),
    ("train-id-beyond-dict", "train", _id_out_of_range("train", 60000, 310), "token id 60000 (at token 310)"),
    ("train-id-just-beyond-dict", "train", _id_out_of_range("train", 24), "of 24 symbols (ids 0..23)"),
    ("valid-id-beyond-dict", "train", _id_out_of_range("valid", 999), "valid.bin: token id 999"),
    ("eval-id-beyond-dict", "eval-lm", _id_out_of_range("valid", 60000), "valid.bin: token id 60000 (at token 3)"),
    ("manifest-not-json", "train", _write("manifest.json", b"{"), "unreadable manifest"),
    ("manifest-splits-a-list", "eval-lm", lambda d: _edit_manifest(d, splits=[]), "'splits' is not an object"),
    ("manifest-words-a-string", "eval-lm", lambda d: _edit_manifest(d, words="many"),
     "split 'valid' has words 'many', not a count"),
]


@pytest.mark.parametrize("name,tool,damage,match", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_damaged_data_bin_is_refused_before_anything_is_written(world, capsys, tmp_path, name, tool, damage, match):
    data = tmp_path / "bin"
    shutil.copytree(world["data"], data)
    damage(data)
    if tool == "train":
        save_dir = tmp_path / "save"
        refused(capsys, "train", [data, *TINY, "--max-update", "4", "--save-dir", save_dir], data, save_dir,
                match=match)
        assert not save_dir.exists() or not [p for p in save_dir.iterdir() if not p.name.endswith(".lock")]
    else:
        refused(capsys, "eval-lm", [data, "--path", world["base"], "--gen-subset", "valid"], data, world["ck"],
                match=match)


# --- hostile flags ------------------------------------------------------------------------------------------
TRAIN_FLAGS = [
    (["--lr", "-1"], "--lr -1.0: must be >= 0"),
    (["--lr", "nan"], "--lr nan: must be a finite number"),
    (["--lr", "inf"], "--lr inf: must be a finite number"),
    (["--seed", "-1"], "--seed -1: must be >= 0"),
    (["--dropout", "1.5"], "--dropout 1.5: must be in [0, 1)"),
    (["--attention-dropout", "-0.1"], "--attention-dropout -0.1: must be in [0, 1)"),
    (["--update-freq", "0"], "--update-freq 0: must be >= 1"),
    (["--decoder-embed-dim", "0"], "--decoder-embed-dim 0: must be >= 1"),
    (["--decoder-ffn-embed-dim", str(10**12)], "--decoder-ffn-embed-dim 1000000000000: must be <= 1048576"),
    (["--decoder-attention-heads", "0"], "--decoder-attention-heads 0: must be >= 1"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--batch-size", "-3"], "--batch-size -3: must be >= 1"),
    (["--max-tokens", "0"], "--max-tokens 0: must be >= 1"),
    (["--max-update", "-1"], "--max-update -1: must be >= 0"),
    (["--max-epoch", "-1"], "--max-epoch -1: must be >= 0"),
    (["--decoder-layers", "0"], "--decoder-layers 0: must be >= 1"),
    (["--decoder-layers", "-1"], "--decoder-layers -1: must be >= 1"),
    (["--clip-norm", "-1"], "--clip-norm -1.0: must be >= 0"),
    (["--warmup-updates", "-5"], "--warmup-updates -5: must be >= 0"),
    (["--warmup-init-lr=-1e-7"], "--warmup-init-lr -1e-07: must be >= 0"),  # argparse reads a bare -1e-7 as a flag
    (["--validate-interval-updates", "-1"], "--validate-interval-updates -1: must be >= 0"),
    (["--save-interval-updates", "-2"], "--save-interval-updates -2: must be >= 0"),
    (["--keep-interval-updates", "-2"], "--keep-interval-updates -2: must be >= -1"),
    (["--log-interval", "0"], "--log-interval 0: must be >= 1"),
    (["--patience", "-2"], "--patience -2: must be >= -1"),
    (["--tokens-per-sample", "0"], "--tokens-per-sample 0: must be >= 1"),
    (["--adam-betas", "(0.9, 1.2)"], "--adam-betas (0.9, 1.2): each value must be in [0, 1)"),
    (["--adam-betas", "0.9"], "--adam-betas (0.9): must be 2 numbers"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1: must be >= 0"),
    (["--stop-time-hours", "nan"], "--stop-time-hours nan: must be a finite number"),
    (["--max-nonfinite-updates", "0"], "--max-nonfinite-updates 0: must be >= 1"),
    (["--lr-scheduler", "cosine"], "--lr-scheduler cosine needs --max-update"),
    (["--arch", "llama_tiny", "--decoder-kv-heads", "0"], "--decoder-kv-heads 0: must be >= 1"),
    (["--arch", "llama_tiny", "--rope-theta", "0"], "--rope-theta 0.0: must be > 0"),
]


@pytest.mark.parametrize("flags,match", TRAIN_FLAGS, ids=[" ".join(f) for f, _ in TRAIN_FLAGS])
def test_out_of_range_training_flag_is_refused_before_anything_is_written(world, capsys, tmp_path, flags, match):
    save_dir = tmp_path / "save"
    refused(capsys, "train", [world["data"], *TINY, *flags, "--save-dir", save_dir], world["data"], save_dir,
            match=match)


def test_out_of_range_model_flag_is_refused_before_the_default_corpus_is_preprocessed(capsys, tmp_path,
                                                                                      monkeypatch):
    """With no DATA_BIN the embedded corpus would be preprocessed first (minutes, and a data-bin written)."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, "train", ["--decoder-layers", "0", "--save-dir", tmp_path / "save"], tmp_path,
            match="--decoder-layers 0: must be >= 1")
    assert not (tmp_path / "data-bin").exists()


def test_out_of_range_flags_of_the_other_tools(world, capsys, tmp_path):
    data, ck, base = world["data"], world["ck"], world["base"]
    results = tmp_path / "results.json"
    results.write_text("keep me\n")
    evals = [
        (["--tokens-per-sample", "0"], "--tokens-per-sample 0: must be >= 1"),
        (["--context-window", "-1"], "--context-window -1: must be >= 0"),
        (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
        (["--max-tokens", "-5"], "--max-tokens -5: must be >= 1"),
        (["--softmax-batch", "0"], "--softmax-batch 0: must be >= 1"),
        (["--results-path", results], "is a file; pass a directory"),
        (["--results-path", results / "sub"], "which is a file"),
    ]
    for flags, match in evals:
        refused(capsys, "eval-lm", [data, "--path", base, "--gen-subset", "valid", *flags], ck, data, results,
                match=match)
    for flags, match in [(["--top-p", "nan"], "--top-p nan: must be a finite number"),
                         (["--top-p", "0"], "--top-p 0.0: must be in (0, 1]"),
                         (["--temperature", "nan"], "--temperature nan: must be a finite number"),
                         (["--temperature", "0"], "--temperature 0.0 must be > 0"),
                         (["--num-samples", "0"], "--num-samples 0: must be >= 1"),
                         (["--max-new-tokens", "-1"], "--max-new-tokens -1: must be >= 0"),
                         (["--top-k", "-1"], "--top-k -1: must be >= 0"),
                         (["--seed", "-1"], "--seed -1: must be >= 0")]:
        refused(capsys, "generate", ["--path", base, *flags], ck, match=match)
    out = tmp_path / "ablate"
    for flags, match in [(["--seeds", "0"], "--seeds 0: must be >= 1"),
                         (["--eval-context-window", "-1"], "--eval-context-window -1: must be >= 0"),
                         (["--curve-points", "-1"], "--curve-points -1: must be >= 0"),
                         (["--lr", "nan"], "--lr nan: must be a finite number"),
                         (["--decoder-layers", "0"], "--decoder-layers 0: must be >= 1")]:
        refused(capsys, "ablate", [data, "--output", out, *TINY[:-2], "--max-update", "2", *flags], data, out,
                match=match)
    text = tmp_path / "train.txt"
    text.write_text("a b c\n")
    dest = tmp_path / "pp"
    for flags, match in [(["--padding-factor", "0"], "--padding-factor 0: must be >= 1"),
                         (["--workers", "0"], "--workers 0: must be >= 1"),
                         (["--valid-fraction", "1.5"], "--valid-fraction 1.5: must be in [0, 1)"),
                         (["--spm-character-coverage", "0"], "--spm-character-coverage 0.0: must be in (0, 1]"),
                         (["--nwordssrc", "-2"], "--nwordssrc -2: must be >= -1"),
                         (["--seed", "-1"], "--seed -1: must be >= 0")]:
        refused(capsys, "preprocess", ["--trainpref", text, "--destdir", dest, *flags], tmp_path, match=match)
    assert not dest.exists()
