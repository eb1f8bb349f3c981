"""results.csv / results.json, report.md (mean +- std per arm, paired differences) and the plot."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from lmtie.ablation.stats import mean_std, paired_difference
from lmtie.io import atomic_path, atomic_write_text

# (column, label, format) of the per-arm tables, in the order a reader wants them
METRICS = [
    ("params_unique", "unique parameters", "{:,.0f}"), ("params_embedding", "embedding parameters", "{:,.0f}"),
    ("params_non_embedding", "non-embedding parameters", "{:,.0f}"), ("updates", "updates", "{:,.0f}"),
    ("train_ppl", "train ppl", "{:.2f}"), ("valid_ppl", "valid ppl", "{:.2f}"), ("test_ppl", "test ppl", "{:.2f}"),
    ("train_word_ppl", "train word ppl", "{:.2f}"), ("valid_word_ppl", "valid word ppl", "{:.2f}"),
    ("test_word_ppl", "test word ppl", "{:.2f}"), ("test_bleu", "test BLEU", "{:.2f}"), ("test_chrf", "test chrF", "{:.2f}"),
    ("train_bpb", "train bits/byte", "{:.4f}"),
    ("valid_bpb", "valid bits/byte", "{:.4f}"), ("test_bpb", "test bits/byte", "{:.4f}"),
    ("best_epoch", "epoch of the best valid loss", "{:.1f}"), ("best_update", "update of the best valid loss", "{:,.0f}"), ("tokens_per_s", "train tokens/s", "{:,.0f}"), ("peak_memory_mb", "peak memory (MB)", "{:,.0f}"),
    ("wall_s", "train wall time (s)", "{:,.1f}"), ("pad_row_norm", "pad-row norm", "{:.3g}"),
    ("embed_cosine", "cos(embed_tokens, embed_out) rows", "{:.3f}"),
]
DIFF_METRICS = ["params_unique", "train_ppl", "valid_ppl", "test_ppl", "valid_word_ppl", "test_word_ppl",
                "valid_bpb", "test_bpb", "test_bleu", "test_chrf"]
CSV_COLUMNS = ["arm", "seed", "tied", "share_all_embeddings", "decoder_embed_dim",
               *[m[0] for m in METRICS if m[0] != "updates"], "updates",
               "train_tokens", "valid_tokens", "test_tokens", "best_valid_ppl_training", "eval_checkpoint",
               "eval_tokens_per_sample", "eval_context_window", "data_digest"]
_FORMATS = {key: fmt for key, _, fmt in METRICS}


def best_update(row: dict) -> int | None:
    """The update of the run's best validation (the earliest of equal ones, as checkpoint_best keeps)."""
    curve = row.get("valid_curve") or []
    return min(curve, key=lambda p: (p[1], p[0]))[0] if curve else None


def by_arm(rows: Sequence[dict], arms: Sequence[str]) -> dict[str, list[dict]]:
    """Rows grouped by arm (in ``arms`` order), each group sorted by seed, with ``best_update`` added."""
    rows = [{**r, "best_update": best_update(r)} for r in rows]
    return {arm: sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"]) for arm in arms}


def arm_summary(rows: Sequence[dict]) -> dict[str, dict]:
    """{metric: {"mean", "std", "n"}} over the rows' seeds, for the metrics they all have."""
    out = {}
    for key, _, _ in METRICS:
        values = [r.get(key) for r in rows]
        if values and all(v is not None for v in values):
            mean, std = mean_std([float(v) for v in values])
            out[key] = {"mean": mean, "std": std, "n": len(values)}
    return out


def differences(groups: dict[str, list[dict]], reference: str) -> dict[str, dict[str, dict]]:
    """Paired (by seed) differences reference minus each other arm, for :data:`DIFF_METRICS`."""
    ref = {r["seed"]: r for r in groups.get(reference, [])}
    out = {}
    for arm, rows in groups.items():
        if arm == reference:
            continue
        pairs = [(ref[r["seed"]], r) for r in rows if r["seed"] in ref]
        out[arm] = {key: paired_difference([a[key] for a, _ in pairs], [b[key] for _, b in pairs])
                    for key in DIFF_METRICS
                    if pairs and all(a.get(key) is not None and b.get(key) is not None for a, b in pairs)}
    return out


def digest_check(groups: dict[str, list[dict]]) -> dict[int, bool]:
    """Per seed: did every arm see the same batches (equal data digests)?"""
    seeds: dict[int, set] = {}
    for rows in groups.values():
        for r in rows:
            seeds.setdefault(r["seed"], set()).add(r["data_digest"])
    return {seed: len(d) == 1 for seed, d in sorted(seeds.items())}


def _fmt(key: str, value) -> str:
    return "–" if value is None else _FORMATS.get(key, "{:.4g}").format(value)


def _mean_std(key: str, s: dict) -> str:
    return _fmt(key, s["mean"]) + ("" if s["std"] is None else f" ± {_fmt(key, s['std'])}")


def arm_table(arm: str, rows: Sequence[dict]) -> str:
    """Markdown: one line per metric, mean ± std over seeds, then each seed's value."""
    summary = arm_summary(rows)
    head = f"### {arm} ({len(rows)} seed{'s' * (len(rows) != 1)})\n\n"
    lines = ["| metric | mean ± std | " + " | ".join(f"seed {r['seed']}" for r in rows) + " |",
             "|---|---|" + "---|" * len(rows)]
    for key, label, _ in METRICS:
        if key in summary:
            seeds = " | ".join(_fmt(key, r[key]) for r in rows)
            lines.append(f"| {label} | {_mean_std(key, summary[key])} | {seeds} |")
    return head + "\n".join(lines) + "\n"


def difference_table(reference: str, arm: str, diffs: dict[str, dict]) -> str:
    """Markdown: mean paired difference, its 95% CI and the per-seed differences."""
    labels = {key: label for key, label, _ in METRICS}
    lines = [f"### {reference} minus {arm} (paired by seed)\n", "| metric | mean difference | 95% CI | per seed |",
             "|---|---|---|---|"]
    for key, d in diffs.items():
        ci = "– (needs 2 seeds)" if d["low"] is None else f"[{_fmt(key, d['low'])}, {_fmt(key, d['high'])}]"
        per_seed = ", ".join(_fmt(key, v) for v in d["diffs"])
        lines.append(f"| {labels[key]} | {_fmt(key, d['mean'])} | {ci} | {per_seed} |")
    return "\n".join(lines) + "\n"


def report_markdown(rows: Sequence[dict], arms: Sequence[str], settings: dict, missing: Sequence[str] = ()) -> str:
    groups = by_arm(rows, arms)
    parts = ["# Tying ablation: " + " vs ".join(arms) + "\n", _settings_text(settings)]
    checks = digest_check(groups)
    bad = [s for s, ok in checks.items() if not ok]
    verdict = ("NO for seeds " + str(bad)) if bad else ("yes, seeds " + ", ".join(map(str, checks))) if checks \
        else "no finished runs yet"
    parts.append(f"Identical batches within each seed (data digests equal): {verdict}.\n")
    if missing:
        parts.append(f"Not finished yet (run the same command again): {', '.join(missing)}.\n")
    parts.append("## Per arm (mean ± sample std over seeds)\n")
    parts += [arm_table(arm, groups[arm]) for arm in arms if groups[arm]]
    parts.append("## Paired differences (Student t, n - 1 degrees of freedom)\n")
    for arm, diffs in differences(groups, arms[0]).items():
        if diffs:
            parts.append(difference_table(arms[0], arm, diffs))
    return "\n".join(parts)


def _settings_text(s: dict) -> str:
    lines = [f"- data: `{s['data']}`; trained on split `{s['train_subset']}`, validated on `{s['valid_subset']}`, "
             f"tested on `test`",
             f"- model: `--arch {s['arch']}` with {s['model_flags'] or 'no further model flags'}; arms: "
             + "; ".join(f"{a}: {d}" for a, d in s["arm_changes"].items()),
             f"- budget per run: {s['budget']}; seeds {', '.join(map(str, s['seeds']))}",
             f"- scored like lmtie-eval-lm on each run's checkpoint_best: {s['scoring']}",
             f"- train ppl: {s['train_scope']}; Press & Wolf (2017) found the tie raising train ppl in their large "
             "model with dropout (48.5 vs 37.8 untied) but not in their small one without (36.4 vs 38.0): compare the "
             "train and valid rows"]
    return "\n".join(lines) + "\n"


def write_results(output: Path, rows: Sequence[dict], arms: Sequence[str], settings: dict,
                  missing: Sequence[str] = ()) -> dict:
    """results.json, results.csv and report.md in ``output``; returns what results.json holds."""
    groups = by_arm(rows, arms)
    data = {"settings": settings, "runs": list(rows), "missing": list(missing),
            "summary": {arm: arm_summary(g) for arm, g in groups.items() if g},
            "differences": {f"{arms[0]} minus {arm}": d for arm, d in differences(groups, arms[0]).items()},
            "identical_batches": {str(k): v for k, v in digest_check(groups).items()}}
    atomic_write_text(output / "results.json", json.dumps(data, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([r for arm in arms for r in groups[arm]])
    atomic_write_text(output / "results.csv", buf.getvalue())
    atomic_write_text(output / "report.md", report_markdown(rows, arms, settings, missing))
    return data


def plot_curves(output: Path, rows: Sequence[dict], arms: Sequence[str]) -> Path | None:
    """valid_curves.png: valid ppl against updates, one line per run, one colour per arm."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, so no valid_curves.png (pip install 'lmtie[plot]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, arm in enumerate(arms):
        for j, r in enumerate(r for r in rows if r["arm"] == arm):
            steps, ppl = zip(*r["valid_curve"]) if r["valid_curve"] else ((), ())
            ax.plot(steps, ppl, color=colours[i % len(colours)], alpha=0.8, marker=".",
                    label=arm if j == 0 else None)
    ax.set(xlabel="updates", ylabel="valid ppl (log scale)", yscale="log", title="Valid perplexity, every run")
    plain = matplotlib.ticker.FormatStrFormatter("%g")  # 80, not 8 x 10^1
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.grid(alpha=0.3)
    ax.legend(title="arm")
    path = output / "valid_curves.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
