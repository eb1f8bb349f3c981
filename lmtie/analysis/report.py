"""lmtie-analyze's report: each checkpoint's embedding matrices, and how their word-pair
similarities rank against each other's (Press & Wolf 2017, sec. 4).

Per checkpoint: the singular-value spectrum of the input and output matrices (one matrix when
tied), the mean cosine similarity of matching rows (untied), the pad row's norm. Across the
checkpoints (one dictionary): Spearman's correlation of the pairwise cosine similarities of every
two matrices, on one sample of word pairs; Press & Wolf's check is the tied matrix against an
untied model's output and input embeddings. Writes analysis.json, analysis.md and the plots.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch

from lmtie.analysis.config import AnalyzeConfig
from lmtie.analysis.embeddings import matrix_stats, pairwise_cosines, row_cosine, sample_pairs, spearman
from lmtie.errors import UserError
from lmtie.io import atomic_path, atomic_write_text

_TYING = ("untie_at_update", "init_output_from_embedding", "output_projection")


def word_rows(dictionary) -> torch.Tensor:
    """Rows of real words: no special symbols, no ``madeupword`` padding of the vocabulary size."""
    keep = [i for i in range(dictionary.nspecial, len(dictionary)) if not dictionary[i].startswith("madeupword")]
    return torch.tensor(keep, dtype=torch.long)


def matrices(model) -> dict[str, torch.Tensor]:
    """The (V, d) matrices of a model by role: ``tied``, or ``input`` and ``output``; with Press &
    Wolf's projection P also ``output@P``, the matrix the features effectively meet (h P^T W^T)."""
    emb, out = model.input_embedding.weight.detach().float(), model.output_weight.detach().float()
    found = {"tied": emb} if model.tied else {"input": emb, "output": out}
    P = getattr(model, "output_projection", None)
    if P is not None:
        found["output@P"] = out @ P.detach().float()  # (V, d) @ (d, d)
    return found


def analyze_models(models: list[tuple[str, object]], dictionary, cfg: AnalyzeConfig) -> dict:
    """The report's content for ``(label, model)`` pairs sharing ``dictionary`` (no files touched)."""
    rows = word_rows(dictionary)
    if len(rows) < 3:
        raise UserError(f"the dictionary has {len(rows)} word rows; the analysis needs at least 3")
    left, right = sample_pairs(rows, cfg.pairs, cfg.seed)
    checkpoints, cosines = [], {}
    for label, model in models:
        mats, pad = matrices(model), model.cfg.padding_idx
        entry = {"label": label, "family": model.family, "tied": model.tied,
                 "tying": {k: getattr(model.cfg, k, None) for k in _TYING},
                 "matrices": {role: matrix_stats(w, rows, pad) for role, w in mats.items()},
                 "row_cosine": None if model.tied else row_cosine(mats["input"], mats["output"], rows)}
        checkpoints.append(entry)
        cosines.update({f"{label}:{role}": pairwise_cosines(w, left, right) for role, w in mats.items()})
    correlations = [{"a": a, "b": b, "spearman": spearman(cosines[a], cosines[b])}
                    for a, b in itertools.combinations(cosines, 2)]
    return {"words": len(rows), "pairs": len(left), "seed": cfg.seed, "checkpoints": checkpoints,
            "rank_correlations": correlations, "press_wolf": press_wolf(checkpoints, correlations),
            "_cosines": cosines}


def press_wolf(checkpoints: list[dict], correlations: list[dict]) -> list[dict]:
    """For every tied and untied checkpoint: rho(tied, untied output) and rho(tied, untied input)."""
    rho = {frozenset((c["a"], c["b"])): c["spearman"] for c in correlations}
    out = []
    for t, u in itertools.product([c for c in checkpoints if c["tied"]], [c for c in checkpoints if not c["tied"]]):
        a = f"{t['label']}:tied"
        row = {"tied": t["label"], "untied": u["label"],
               "vs_output": rho[frozenset((a, f"{u['label']}:output"))],
               "vs_input": rho[frozenset((a, f"{u['label']}:input"))]}
        out.append(row)
    return out


def load_checkpoints(paths: list[str]):
    """``[(label, model)]`` and the shared dictionary; a missing file or another dictionary is a UserError."""
    from lmtie.checkpoint import load_model

    loaded, labels = [], set()
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UserError(f"{p}: no such checkpoint")
        model, ck = load_model(path)
        if loaded and ck.dictionary != loaded[0][2].dictionary:
            raise UserError(f"{p}: another dictionary ({len(ck.dictionary)} symbols) than {paths[0]} "
                            f"({len(loaded[0][2].dictionary)}); the analysis compares word pairs of one dictionary")
        label = f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
        label = label if label not in labels else f"{label}#{len(loaded)}"
        labels.add(label)
        loaded.append((label, model.eval(), ck))
    return [(label, m) for label, m, _ in loaded], loaded[0][2].dictionary


def analyze(paths: list[str], cfg: AnalyzeConfig) -> dict:
    """Load the checkpoints, analyse them, write analysis.json, analysis.md and (with matplotlib) the plots."""
    cfg.validate()
    if not paths:
        raise UserError("give at least one checkpoint")
    models, dictionary = load_checkpoints(paths)
    with torch.no_grad():
        result = analyze_models(models, dictionary, cfg)
    cosines = result.pop("_cosines")
    out = Path(cfg.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--output {out}: cannot create it ({e.strerror})")
    result["plots"] = plot(out, result, cosines) if cfg.plot else []
    atomic_write_text(out / "analysis.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "analysis.md", markdown(result))
    return result


def fmt(x, spec="{:.3f}") -> str:
    """A number for the report, or a dash for None."""
    return "–" if x is None else spec.format(x)


def markdown(r: dict) -> str:
    lines = ["# Embedding analysis\n", f"{r['words']:,} word rows (special symbols left out), {r['pairs']:,} word "
             f"pairs (seed {r['seed']}).\n", "## Matrices\n",
             "| checkpoint | matrix | shape | top singular value | effective rank | pad-row norm | mean row norm |",
             "|---|---|---|---|---|---|---|"]
    for c in r["checkpoints"]:
        for role, m in c["matrices"].items():
            lines.append(f"| {c['label']} | {role} | {m['shape'][0]} x {m['shape'][1]} | "
                         f"{fmt(m['singular_values'][0])} | {fmt(m['effective_rank'], '{:.1f}')} | "
                         f"{fmt(m['pad_row_norm'], '{:.3g}')} | {fmt(m['mean_row_norm'])} |")
    untied = "; ".join(f"{c['label']} {fmt(c['row_cosine'])}" for c in r["checkpoints"] if not c["tied"])
    lines += ["", f"Mean cosine of matching input/output rows (untied): {untied or 'no untied checkpoint'}", ""]
    lines += ["## Rank correlation of pairwise similarities (Spearman)\n", "| a | b | rho |", "|---|---|---|"]
    lines += [f"| {c['a']} | {c['b']} | {fmt(c['spearman'])} |" for c in r["rank_correlations"]]
    if r["press_wolf"]:
        lines += ["", "Press & Wolf's check (the tied matrix should rank word pairs more like the untied output "
                  "embedding than like the untied input embedding):", ""]
        lines += [f"- {p['tied']} vs {p['untied']}: rho(output) {fmt(p['vs_output'])}, rho(input) "
                  f"{fmt(p['vs_input'])}" for p in r["press_wolf"]]
    return "\n".join(lines) + "\n"


def plot(out: Path, r: dict, cosines: dict[str, np.ndarray]) -> list[str]:
    """spectrum.png (every matrix's normalised singular values) and, with a tied and an untied
    checkpoint, similarity.png (the first such pair's pairwise cosines against each other)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, so no plots (pip install 'lmtie[plot]')")
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in r["checkpoints"]:
        for role, m in c["matrices"].items():
            s = np.asarray(m["singular_values"])
            ax.plot(np.arange(1, len(s) + 1), s / s[0], label=f"{c['label']}:{role}", alpha=0.85)
    ax.set(xlabel="index", ylabel="singular value / largest", yscale="log", title="Singular-value spectra")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    written = [_save(fig, out / "spectrum.png", plt)]
    if r["press_wolf"]:
        p = r["press_wolf"][0]
        tied = cosines[f"{p['tied']}:tied"]
        show = np.random.default_rng(0).permutation(len(tied))[:3000]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
        for ax, role in zip(axes, ("output", "input")):
            other = cosines[f"{p['untied']}:{role}"]
            ax.scatter(other[show], tied[show], s=3, alpha=0.4)
            ax.set(xlabel=f"cos, {p['untied']} {role}", title=f"rho {fmt(p['vs_' + role])}")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"cos, {p['tied']} (tied)")
        written.append(_save(fig, out / "similarity.png", plt))
    return written


def _save(fig, path: Path, plt) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(path)
