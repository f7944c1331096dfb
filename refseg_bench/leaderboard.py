"""Leaderboards built only from run records (``results/*/summary.json``); nothing reruns.

Which table a row goes to is the weight-trust rule of :mod:`refseg_bench.trust`: rows on
random weights are pipeline checks, rows on unverified files (no published sha256) are
results one can only trust as far as the files; both are flagged in the CSV and kept in
tables of their own in the Markdown, so the main table rests on checked weights only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from refseg_bench.trust import SECTIONS, section

# episode_kind: "exact" (the official loader's episodes, replayed), "exact, lists ..." (the
# official draws on lists that could not be checked or differ), or "rule-equivalent".
ID_COLUMNS = ["method", "model", "weights", "dataset", "protocol", "episode_kind", "split",
              "shot", "annotation", "scoring"]


def load_summaries(results_dir: Path) -> list[dict]:
    out = []
    for path in sorted(Path(results_dir).glob("*/summary.json")):
        try:
            s = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # a summary is written atomically; an unreadable one is not ours
        if s.get("complete"):
            out.append(s)
    return out


def _scoring(p: dict) -> str:
    size = p["scoring"]["size"]
    where = "original size" if size is None else f"resized {size}x{size}"
    return where + ("" if p["scoring"]["ignore"] else ", no ignore")


def row_of(s: dict) -> dict:
    info = s.get("method_info", {})
    row = {
        "method": s["method"], "model": info.get("model", ""),
        "weights": info.get("weights", "none"), "dataset": s["dataset"],
        "protocol": s["protocol"]["name"],
        "episode_kind": s.get("episode_kind", "rule-equivalent"),  # older records: the sampler
        "split": s["split"], "shot": s["shot"],
        "annotation": s["annotation"], "scoring": _scoring(s["protocol"]),
    }
    for f, v in sorted(s["folds"].items(), key=lambda kv: int(kv[0])):
        row[f"fold{f}"] = round(v["miou"], 2)
    row["mean"] = round(s["mean_miou"], 2)
    row["seed_std"] = round(s["seed_std_miou"], 2) if s.get("seed_std_miou") else None
    row["fbiou"] = round(s["mean_fbiou"], 2)
    row["episodes"] = sum(u["n_scored"] for u in s["units"])
    row["skipped"] = sum(u["n_skipped"] for u in s["units"])
    lo, hi = s["ci95"] if s.get("ci95") else (None, None)
    row["ci95"] = f"[{lo:.1f}, {hi:.1f}]" if lo is not None else ""
    row["_ci"] = (lo, hi)
    row["seeds"] = ",".join(str(x) for x in s["seeds"])
    row["run_id"] = s["run_id"]
    return row


def build(results_dir: Path) -> pd.DataFrame:
    rows = [row_of(s) for s in load_summaries(results_dir)]
    if not rows:
        return pd.DataFrame(columns=ID_COLUMNS[:3] + ["random_weights", "section"]
                            + ID_COLUMNS[3:] + ["mean", "run_id", "_ci"])
    df = pd.DataFrame(rows)
    fold_cols = sorted((c for c in df.columns if c.startswith("fold")), key=lambda c: int(c[4:]))
    cols = ID_COLUMNS + fold_cols + ["mean", "seed_std", "fbiou", "episodes", "skipped", "ci95",
                                     "seeds", "run_id", "_ci"]
    df = df[cols].sort_values(["dataset", "protocol", "shot", "annotation", "mean"],
                              ascending=[True, True, True, True, False])
    df.insert(3, "random_weights", df["weights"] == "random")
    df.insert(4, "section", [section(w) for w in df["weights"]])
    return df.reset_index(drop=True)


def to_markdown(df: pd.DataFrame) -> str:
    def table(part: pd.DataFrame) -> str:
        part = part.drop(columns=["random_weights", "section", "run_id"]).dropna(axis=1,
                                                                                 how="all")
        head = "| " + " | ".join(part.columns) + " |"
        sep = "|" + "|".join("---" for _ in part.columns) + "|"
        body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |"
                for r in part.itertuples(index=False)]
        return "\n".join([head, sep, *body])

    out = ["# refseg-bench leaderboard", "",
           "mIoU (%) per fold = mean over the fold's classes of summed intersection over "
           "summed union (255 ignored unless the scoring column says otherwise); FB-IoU (%) "
           "pooled over all episodes; 95% interval = class-stratified bootstrap. "
           "episode_kind: exact = the official test loader's own episodes, replayed; "
           "rule-equivalent = drawn by the harness under the same rules.", ""]
    parts = {name: df[df["section"] == name] for name in SECTIONS}
    out += ["## Results", "", table(parts["results"]) if len(parts["results"])
            else "_no runs yet_", ""]
    if len(parts["unverified"]):
        out += ["## Unverified weights (files without a published sha256; the record has "
                "their hashes)", "", table(parts["unverified"]), ""]
    if len(parts["random"]):
        out += ["## Random weights (pipeline checks, not comparable results)", "",
                table(parts["random"]), ""]
    return "\n".join(out)


def plot(df: pd.DataFrame, path: Path) -> None:
    """Mean mIoU per row with its 95% interval, one panel per (dataset, protocol, shot,
    annotation) setting, so only comparable rows share an axis; random-weight rows hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(df.groupby(["dataset", "protocol", "shot", "annotation"], sort=True))
    heights = [0.35 * len(g) + 0.9 for _, g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, sum(heights) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, ((dataset, protocol, shot, annotation), g) in zip(axes[:, 0], groups, strict=True):
        labels = [f"{m} ({w}{', exact episodes' if k.startswith('exact') else ''})"
                  for m, w, k in zip(g["method"], g["weights"], g["episode_kind"], strict=True)]
        lo = [m - c[0] if c[0] is not None else 0 for m, c in zip(g["mean"], g["_ci"], strict=True)]
        hi = [c[1] - m if c[1] is not None else 0 for m, c in zip(g["mean"], g["_ci"], strict=True)]
        bars = ax.barh(range(len(g)), g["mean"], xerr=[lo, hi], color="C0", capsize=3)
        for bar, random in zip(bars, g["random_weights"], strict=True):
            if random:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
        ax.set_yticks(range(len(g)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_title(f"{dataset}, {protocol}, {shot}-shot, {annotation}", fontsize=9)
    axes[-1, 0].set_xlabel("mean mIoU (%) with 95% interval; hatched: random weights")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results_dir: Path) -> pd.DataFrame:
    df = build(results_dir)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    files = df.drop(columns=["_ci"], errors="ignore")
    files.to_csv(results_dir / "leaderboard.csv", index=False)
    (results_dir / "leaderboard.md").write_text(to_markdown(files))
    if not df.empty:
        plot(df, results_dir / "leaderboard.png")
    return files
