"""A report per leaderboard, built from run records only (it never runs a model).

A leaderboard is one comparable setting: the rows of ``refseg-bench leaderboard`` with the
same dataset, protocol, split, shot, annotation and scoring. For each, ``<out>/<slug>/``
gets ``report.md`` with the leaderboard rows, ``miou.png`` (mean mIoU with its interval),
``class_iou.png`` (per-class IoU, one bar per run) and, per run, ``episodes_<run>.png``:
its best and worst episodes as reference + annotation | target | prediction | label
(:mod:`refseg_bench.report_grid`). ``<out>/index.md`` links the reports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from refseg_bench.datasets.base import DatasetError
from refseg_bench.leaderboard import build, plot

GROUP_KEYS = ["dataset", "protocol", "split", "shot", "annotation", "scoring"]
SHOWN = ["method", "model", "weights", "fold*", "mean", "ci95", "fbiou", "episodes", "skipped",
         "run_id"]


def slug(key: dict) -> str:
    text = (f"{key['dataset']}_{key['protocol']}_{key['split']}_{key['shot']}shot_"
            f"{key['annotation']}")
    if key["scoring"] != "original size":
        text += "_" + key["scoring"]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def _summary(results_dir: Path, run_id: str) -> dict:
    return json.loads((results_dir / run_id / "summary.json").read_text())


def plot_class_iou(summaries: list[dict], labels: list[str], path: Path) -> None:
    """Per (fold, class) the IoU of every run (first seed) as one marker per run on a
    shared 0-100 axis: compact for many classes and runs, and the spread across runs
    (grey line) shows where methods disagree."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: dict[tuple[int, str], dict[str, float]] = {}
    for s, label in zip(summaries, labels, strict=True):
        for u in s["units"]:
            if u["seed"] != s["seeds"][0]:
                continue
            for name, iou in u["class_iou"].items():
                rows.setdefault((u["fold"], name), {})[label] = iou or 0.0
    keys = sorted(rows, key=lambda k: k[0])  # by fold, keeping each fold's class order
    fig, ax = plt.subplots(figsize=(8, 0.26 * len(keys) + 1.4))
    for y, key in enumerate(keys):
        values = list(rows[key].values())
        ax.plot([min(values), max(values)], [y, y], color="0.8", linewidth=3, zorder=1)
    markers = "osD^vP*Xh<>"
    for k, label in enumerate(labels):
        ys = [y for y, key in enumerate(keys) if label in rows[key]]
        xs = [rows[keys[y]][label] for y in ys]
        ax.scatter(xs, ys, s=30, color=f"C{k % 10}", marker=markers[k % len(markers)],
                   label=label, zorder=2, edgecolors="black", linewidths=0.4)
    for y in range(1, len(keys)):
        if keys[y][0] != keys[y - 1][0]:
            ax.axhline(y - 0.5, color="0.5", linewidth=0.6, linestyle=":")
    ax.set_yticks(range(len(keys)), [f"{name} (fold {f})" for f, name in keys], fontsize=8)
    ax.set_ylim(len(keys) - 0.5, -0.5)
    ax.set_xlim(-2, 102)
    ax.set_xlabel("class IoU (%): summed intersection / summed union over the class's episodes",
                  fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
              ncol=min(len(labels), 3))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(df: pd.DataFrame) -> str:
    cols = [c for c in df.columns if c in SHOWN or (c.startswith("fold") and c[4:].isdigit())]
    part = df[cols].dropna(axis=1, how="all")
    lines = ["| " + " | ".join(part.columns) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |"
              for r in part.itertuples(index=False)]
    return "\n".join(lines)


def _run_label(row: pd.Series, duplicated: bool) -> str:
    label = f"{row['method']} (weights: {row['weights']})"
    return f"{label} {row['run_id'][-8:]}" if duplicated else label


def write_group(results_dir: Path, key: dict, df: pd.DataFrame, out: Path, n: int) -> Path:
    """The report of one leaderboard; returns its ``report.md``."""
    from refseg_bench.report_grid import open_dataset, pick_episodes, render_grid

    out.mkdir(parents=True, exist_ok=True)
    dup = df["method"].duplicated(keep=False) | df.duplicated(["method", "weights"], keep=False)
    labels = [_run_label(r, d) for (_, r), d in zip(df.iterrows(), dup, strict=True)]
    summaries = [_summary(results_dir, r) for r in df["run_id"]]
    plot(df, out / "miou.png")
    plot_class_iou(summaries, labels, out / "class_iou.png")
    lines = [f"# {key['dataset']} ({key['split']}), protocol {key['protocol']}, "
             f"{key['shot']}-shot, {key['annotation']} references",
             "", f"Scoring: {key['scoring']}. Built from the run records in `{results_dir}` "
             "only: no model was run for this report. Random-weight rows are pipeline checks, "
             "not results.", "", "## Leaderboard", "", _table(df.drop(columns=["_ci"])), "",
             "![mean mIoU with 95% interval](miou.png)", "", "## Per-class IoU", "",
             "![per-class IoU](class_iou.png)", "", "## Best and worst episodes", "",
             f"Per run, its {n} best and {n} worst episodes by IoU. Columns: the reference "
             "with the annotation the method was given (yellow), the target, the prediction "
             "(magenta outline; the label dashed in yellow) and the label (yellow; grey: "
             "ignored pixels).", ""]
    dataset = None
    for (_, row), label in zip(df.iterrows(), labels, strict=True):
        run_dir = results_dir / row["run_id"]
        lines += [f"### {label}", "", f"Run `{row['run_id']}`, mean mIoU {row['mean']}.", ""]
        try:
            dataset = dataset or open_dataset(run_dir)
        except (DatasetError, OSError) as err:
            lines += [f"_No grid: the dataset could not be opened ({err})._", ""]
            continue
        episodes = pd.read_csv(run_dir / "episodes.csv", keep_default_na=False,
                               na_values={"skip": [""]})
        image = f"episodes_{re.sub(r'[^A-Za-z0-9_.-]+', '-', row['run_id'])}.png"
        found = render_grid(run_dir, dataset, key["annotation"], pick_episodes(episodes, n),
                            out / image, label)
        lines += [f"![{label}: best and worst episodes]({image})", ""]
        if not found:
            lines += ["_This run saved no predictions: to show them, rerun its command "
                      "with `save_predictions=true overwrite=true`._", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def write(results_dir: Path, out: Path, n: int = 3, dataset: str | None = None) -> list[Path]:
    """A report per leaderboard under ``out``, plus ``index.md``; returns the reports."""
    results_dir, out = Path(results_dir), Path(out)
    df = build(results_dir)
    if dataset:
        df = df[df["dataset"] == dataset]
    reports = []
    for values, group in df.groupby(GROUP_KEYS, sort=True):
        key = dict(zip(GROUP_KEYS, values, strict=True))
        reports.append(write_group(results_dir, key, group.reset_index(drop=True),
                                   out / slug(key), n))
    index = ["# Reports", "", "One report per leaderboard (comparable setting), built from "
             f"the run records in `{results_dir}`.", ""]
    index += [f"- [{p.parent.name}]({p.parent.name}/report.md)" for p in reports]
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.md").write_text("\n".join(index) + "\n")
    return reports
