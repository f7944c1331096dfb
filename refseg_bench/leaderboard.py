"""Leaderboards built only from run records (``results/*/summary.json``); nothing reruns.

Rows on random weights are pipeline checks, not results: they are flagged in the CSV and
kept in a separate table in the Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

ID_COLUMNS = ["method", "model", "weights", "dataset", "protocol", "split", "shot",
              "annotation", "scoring"]


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
        "protocol": s["protocol"]["name"], "split": s["split"], "shot": s["shot"],
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
    row["seeds"] = ",".join(str(x) for x in s["seeds"])
    row["run_id"] = s["run_id"]
    return row


def build(results_dir: Path) -> pd.DataFrame:
    rows = [row_of(s) for s in load_summaries(results_dir)]
    if not rows:
        return pd.DataFrame(columns=ID_COLUMNS + ["mean"])
    df = pd.DataFrame(rows)
    fold_cols = sorted((c for c in df.columns if c.startswith("fold")), key=lambda c: int(c[4:]))
    cols = ID_COLUMNS + fold_cols + ["mean", "seed_std", "fbiou", "episodes", "skipped", "ci95",
                                     "seeds", "run_id"]
    df = df[cols].sort_values(["dataset", "protocol", "shot", "annotation", "mean"],
                              ascending=[True, True, True, True, False])
    df.insert(3, "random_weights", df["weights"] == "random")
    return df.reset_index(drop=True)


def to_markdown(df: pd.DataFrame) -> str:
    def table(part: pd.DataFrame) -> str:
        part = part.drop(columns=["random_weights", "run_id"]).dropna(axis=1, how="all")
        head = "| " + " | ".join(part.columns) + " |"
        sep = "|" + "|".join("---" for _ in part.columns) + "|"
        body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |"
                for r in part.itertuples(index=False)]
        return "\n".join([head, sep, *body])

    out = ["# refseg-bench leaderboard", "",
           "mIoU (%) per fold = mean over the fold's classes of summed intersection over "
           "summed union (255 ignored unless the scoring column says otherwise); FB-IoU (%) "
           "pooled over all episodes; 95% interval = class-stratified bootstrap.", ""]
    real, rand = df[~df["random_weights"]], df[df["random_weights"]]
    out += ["## Results", "", table(real) if len(real) else "_no runs yet_", ""]
    if len(rand):
        out += ["## Random weights (pipeline checks, not comparable results)", "", table(rand), ""]
    return "\n".join(out)


def write(results_dir: Path) -> pd.DataFrame:
    df = build(results_dir)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(results_dir / "leaderboard.csv", index=False)
    (results_dir / "leaderboard.md").write_text(to_markdown(df))
    return df
