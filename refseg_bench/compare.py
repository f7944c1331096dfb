"""Paired comparison of two run records evaluated on the same episodes.

Both runs must have sampled the same manifest for every (seed, fold) unit; then episode
``(seed, fold, index)`` is the same query and references in both, and the difference of
their mIoU can be bootstrapped *paired*: each replicate resamples each class's episodes
once and scores both runs on that resample (:func:`refseg_bench.stats.paired_miou_replicates`),
which is much tighter than two independent intervals when the runs agree on which episodes
are hard. Only episodes scored in both runs are paired (the count dropped is reported).

Aggregation follows the run summary: a fold's mIoU is the mean over the fold's classes of
summed intersection over summed union; the overall value is the mean over seeds of the
mean over folds. A per-episode *win* for B means B's IoU is strictly higher than A's
(compared exactly, as fractions of integers); *tie*, equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from refseg_bench.errors import ConfigError
from refseg_bench.stats import fold_miou, paired_miou_replicates, percentile_interval

KEY = ["sampling_seed", "fold", "index"]


@dataclass
class RunRecord:
    """A finished run: its directory, ``summary.json`` and per-episode table."""

    path: Path
    summary: dict
    episodes: pd.DataFrame

    @property
    def label(self) -> str:
        s = self.summary
        weights = s.get("method_info", {}).get("weights", "none")
        return f"{s['method']} ({s['annotation']}, weights {weights})"

    def class_names(self) -> dict[tuple[int, int], str]:
        """(fold, class id) -> class name, from the summary (older records: ``class <id>``)."""
        out = {}
        for u in self.summary["units"]:
            for cid, name in zip(u.get("class_ids", []), u["class_iou"], strict=False):
                out[(u["fold"], cid)] = name
        return out


def load_run(ref: str | Path, results_dir: str | Path = "results") -> RunRecord:
    """The run at directory ``ref``, or the run id ``ref`` under ``results_dir``."""
    path = Path(ref)
    if not path.is_dir():
        path = Path(results_dir) / str(ref)
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        raise ConfigError(f"{ref}: no finished run there (expected {summary_path}). Give a run "
                          "directory or a run id under --results-dir; an unfinished run "
                          "finishes when its `refseg-bench run` command is rerun.")
    episodes = pd.read_csv(path / "episodes.csv", keep_default_na=False,
                           na_values={"skip": [""]})
    return RunRecord(path, json.loads(summary_path.read_text()), episodes)


def check_same_episodes(a: RunRecord, b: RunRecord) -> None:
    """Refuse runs whose (seed, fold) units differ or drew different manifests."""
    ua = {(u["seed"], u["fold"]): u["manifest_sha256"] for u in a.summary["units"]}
    ub = {(u["seed"], u["fold"]): u["manifest_sha256"] for u in b.summary["units"]}
    problems = []
    for seed, fold in sorted(set(ua) | set(ub)):
        sa, sb = ua.get((seed, fold)), ub.get((seed, fold))
        if sa is None or sb is None:
            problems.append(f"seed {seed} fold {fold} is only in run "
                            f"{'B' if sa is None else 'A'}")
        elif sa != sb:
            problems.append(f"seed {seed} fold {fold}: manifest {sa[:12]} (A) vs {sb[:12]} (B)")
    if problems:
        raise ConfigError(
            f"{a.path.name} (A) and {b.path.name} (B) were not evaluated on the same episodes: "
            + "; ".join(problems) + ". A paired comparison needs the same manifests: the same "
            "dataset, split, shot, folds, protocol, episode count and seed. Rerun one of them "
            "with the other's settings (only method, method_args and annotation may differ).")


def pair_episodes(a: RunRecord, b: RunRecord) -> tuple[pd.DataFrame, int]:
    """Per-episode table of the episodes scored in both runs, and how many were dropped
    (skipped in one run or both)."""
    cols = [*KEY, "class_id", "query", "fg_inter", "fg_union", "skip"]
    m = a.episodes[cols].merge(b.episodes[cols], on=KEY, suffixes=("_a", "_b"),
                               validate="one_to_one")
    if len(m) != len(a.episodes) or len(m) != len(b.episodes):
        raise ConfigError(f"the episode tables of {a.path.name} and {b.path.name} list "
                          f"{len(a.episodes)} and {len(b.episodes)} episodes, {len(m)} in common: "
                          "the records are incomplete. Rerun the unfinished run to finish it.")
    bad = m[(m["class_id_a"] != m["class_id_b"]) | (m["query_a"] != m["query_b"])]
    if len(bad):
        raise ConfigError(f"{len(bad)} episodes have the same manifest but another query or "
                          "class in the two records: a record was edited by hand")
    scored = m["skip_a"].isna() & m["skip_b"].isna()
    m = m[scored].rename(columns={"class_id_a": "class_id", "query_a": "query",
                                  "fg_inter_a": "inter_a", "fg_union_a": "union_a",
                                  "fg_inter_b": "inter_b", "fg_union_b": "union_b"})
    out = m[[*KEY, "class_id", "query", "inter_a", "union_a", "inter_b", "union_b"]].copy()
    for col in ("inter_a", "union_a", "inter_b", "union_b"):
        out[col] = out[col].astype(np.int64)
    out["iou_a"] = 100 * out["inter_a"] / out["union_a"].clip(lower=1)
    out["iou_b"] = 100 * out["inter_b"] / out["union_b"].clip(lower=1)
    out["diff"] = out["iou_b"] - out["iou_a"]
    # Exact: compare inter_b / union_b with inter_a / union_a by cross-multiplying.
    sign = np.sign(out["inter_b"] * out["union_a"].clip(lower=1)
                   - out["inter_a"] * out["union_b"].clip(lower=1))
    out["outcome"] = np.select([sign > 0, sign < 0], ["win", "loss"], "tie")
    return out.reset_index(drop=True), int((~scored).sum())


@dataclass
class Comparison:
    """``episodes``: paired per-episode table; ``folds``: per (seed, fold) mIoU of A and B,
    B - A and its interval, win/tie/loss; ``classes``: per (fold, class); ``overall``:
    the run-level numbers."""

    a: RunRecord
    b: RunRecord
    episodes: pd.DataFrame
    folds: pd.DataFrame
    classes: pd.DataFrame
    overall: dict


def _outcomes(df: pd.DataFrame) -> dict:
    counts = df["outcome"].value_counts()
    return {k: int(counts.get(k, 0)) for k in ("win", "tie", "loss")}


def _fold_classes(record: RunRecord, seed: int, fold: int, sampled: list[int]) -> list[int]:
    """The fold's class ids (unsampled ones included: they count 0 in both runs). Older
    records without ``class_ids`` get stand-in ids for the unsampled classes."""
    unit = next(u for u in record.summary["units"] if (u["seed"], u["fold"]) == (seed, fold))
    if unit.get("class_ids"):
        return list(unit["class_ids"])
    missing = len(unit["class_iou"]) - len(set(sampled))
    return sorted(set(sampled)) + [-(k + 1) for k in range(max(missing, 0))]


def compare(a: RunRecord, b: RunRecord, *, n_boot: int = 2000, seed: int = 0,
            level: float = 0.95) -> Comparison:
    """Pair A and B episode by episode and compute everything the report shows."""
    check_same_episodes(a, b)
    episodes, dropped = pair_episodes(a, b)
    rng = np.random.default_rng(seed)
    rows, replicates = [], {}
    for (s, f), df in episodes.groupby(["sampling_seed", "fold"], sort=True):
        classes = _fold_classes(a, int(s), int(f), df["class_id"].tolist())
        args = (df["class_id"].to_numpy(), df["inter_a"].to_numpy(), df["union_a"].to_numpy(),
                df["inter_b"].to_numpy(), df["union_b"].to_numpy(), classes)
        reps = paired_miou_replicates(*args, n_boot=n_boot, rng=rng)
        replicates[(int(s), int(f))] = reps
        miou_a, miou_b = fold_miou(args[0], args[1], args[2], classes), \
            fold_miou(args[0], args[3], args[4], classes)
        lo, hi = percentile_interval(reps[1] - reps[0], level)
        rows.append({"seed": int(s), "fold": int(f), "episodes": len(df), "miou_a": miou_a,
                     "miou_b": miou_b, "diff": miou_b - miou_a, "ci_low": lo, "ci_high": hi,
                     **_outcomes(df)})
    folds = pd.DataFrame(rows)
    seeds = sorted(folds["seed"].unique())
    per_seed = [np.mean([r for (s, _), r in replicates.items() if s == sd], axis=0)
                for sd in seeds]
    overall_reps = np.mean(per_seed, axis=0)
    lo, hi = percentile_interval(overall_reps[1] - overall_reps[0], level)
    seed_means = folds.groupby("seed")[["miou_a", "miou_b"]].mean()
    overall = {"miou_a": float(seed_means["miou_a"].mean()),
               "miou_b": float(seed_means["miou_b"].mean()),
               "ci_low": lo, "ci_high": hi, "level": level, "n_boot": n_boot,
               "bootstrap_seed": seed, "paired_episodes": len(episodes),
               "dropped_episodes": dropped, **_outcomes(episodes)}
    overall["diff"] = overall["miou_b"] - overall["miou_a"]
    return Comparison(a, b, episodes, folds, per_class(episodes, a.class_names()), overall)


def per_class(episodes: pd.DataFrame, names: dict[tuple[int, int], str]) -> pd.DataFrame:
    """Per (fold, class): episodes, class IoU of A and B (summed over the class's episodes of
    every seed), B - A, and the per-episode win/tie/loss counts of B against A."""
    rows = []
    for (f, c), df in episodes.groupby(["fold", "class_id"], sort=True):
        iou_a = 100 * df["inter_a"].sum() / max(int(df["union_a"].sum()), 1)
        iou_b = 100 * df["inter_b"].sum() / max(int(df["union_b"].sum()), 1)
        rows.append({"fold": int(f), "class_id": int(c),
                     "class": names.get((int(f), int(c)), f"class {c}"), "episodes": len(df),
                     "iou_a": iou_a, "iou_b": iou_b, "diff": iou_b - iou_a, **_outcomes(df)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class TextTable:
    """A table as text cells, shared by the console and the Markdown output."""

    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---:" if n else "---" for n in self.numeric) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in self.rows])


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:+.2f}, {hi:+.2f}]"


def tables(c: Comparison, n_changed: int = 5) -> list[TextTable]:
    """Per fold, per class and most-changed episodes, formatted for reading."""
    level = f"{100 * c.overall['level']:.0f}% interval"
    folds = TextTable("Per fold", ["seed", "fold", "episodes", "mIoU A", "mIoU B", "B - A", level,
                                   "B wins", "ties", "B loses"],
                      [[str(r["seed"]), str(r["fold"]), str(r["episodes"]), f"{r['miou_a']:.2f}",
                        f"{r['miou_b']:.2f}", f"{r['diff']:+.2f}",
                        _interval(r["ci_low"], r["ci_high"]), str(r["win"]), str(r["tie"]),
                        str(r["loss"])] for r in c.folds.to_dict("records")],
                      [True] * 10)
    classes = TextTable("Per class (IoU over the class's episodes)",
                        ["fold", "class", "episodes", "IoU A", "IoU B", "B - A", "B wins", "ties",
                         "B loses"],
                        [[str(r["fold"]), str(r["class"]), str(r["episodes"]), f"{r['iou_a']:.2f}",
                          f"{r['iou_b']:.2f}", f"{r['diff']:+.2f}", str(r["win"]), str(r["tie"]),
                          str(r["loss"])] for r in c.classes.to_dict("records")],
                        [True, False] + [True] * 7)
    names = c.a.class_names()
    changed = TextTable("Episodes that changed most", ["seed", "fold", "episode", "class",
                                                       "query", "IoU A", "IoU B", "B - A"],
                        [[str(r["sampling_seed"]), str(r["fold"]), str(r["index"]),
                          names.get((r["fold"], r["class_id"]), f"class {r['class_id']}"),
                          str(r["query"]), f"{r['iou_a']:.2f}", f"{r['iou_b']:.2f}",
                          f"{r['diff']:+.2f}"]
                         for r in most_changed(c, n_changed).to_dict("records")],
                        [True, True, True, False, False, True, True, True])
    return [folds, classes, changed]


def headline(c: Comparison) -> str:
    o = c.overall
    return (f"mIoU B - A: {o['diff']:+.2f} [{o['ci_low']:+.2f}, {o['ci_high']:+.2f}] "
            f"({100 * o['level']:.0f}% interval, paired class-stratified bootstrap, "
            f"{o['n_boot']} replicates); A {o['miou_a']:.2f}, B {o['miou_b']:.2f}; "
            f"per episode B wins {o['win']}, ties {o['tie']}, loses {o['loss']}")


def setting(c: Comparison) -> str:
    s = c.a.summary
    units = len(c.folds)
    scoring = [x.summary["protocol"].get("scoring") for x in (c.a, c.b)]
    differs = (f"; SCORING DIFFERS: A {scoring[0]}, B {scoring[1]}"
               if scoring[0] != scoring[1] else "")
    return (f"{s['dataset']} {s['split']}, protocol {s['protocol']['name']}, {s['shot']}-shot, "
            f"{units} (seed, fold) unit(s), same manifests; {c.overall['paired_episodes']} "
            f"episodes paired, {c.overall['dropped_episodes']} dropped (skipped in a run)"
            + differs)


def most_changed(c: Comparison, n: int = 5) -> pd.DataFrame:
    """The ``n`` episodes B lost most on, then the ``n`` it gained most on."""
    ep = c.episodes
    losses = ep[ep["diff"] < 0].sort_values(["diff", *KEY]).head(n)
    gains = ep[ep["diff"] > 0].sort_values(["diff", *KEY], ascending=[False, True, True, True])
    return pd.concat([losses, gains.head(n)])


def to_markdown(c: Comparison) -> str:
    o = c.overall
    lines = ["# Paired comparison", "",
             f"- A: `{c.a.path.name}`: {c.a.label}",
             f"- B: `{c.b.path.name}`: {c.b.label}",
             f"- {setting(c)}",
             "", f"**{headline(c)}**", "",
             f"Interval columns: the {100 * o['level']:.0f}% interval of B - A. Win: B's "
             "episode IoU strictly higher than A's; tie: equal.", "",
             *[part for t in tables(c) for part in (f"## {t.title}", "", t.markdown(), "")]]
    return "\n".join(lines)


def write(c: Comparison, out: Path) -> list[Path]:
    """``compare.md``, ``episodes.csv``, ``folds.csv``, ``classes.csv`` and
    ``comparison.json`` (the overall numbers and both run ids) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "compare.md", out / "episodes.csv", out / "folds.csv", out / "classes.csv",
             out / "comparison.json"]
    paths[0].write_text(to_markdown(c))
    c.episodes.to_csv(paths[1], index=False)
    c.folds.to_csv(paths[2], index=False)
    c.classes.to_csv(paths[3], index=False)
    paths[4].write_text(json.dumps({"a": str(c.a.path), "b": str(c.b.path), **c.overall},
                                   indent=2) + "\n")
    return paths
