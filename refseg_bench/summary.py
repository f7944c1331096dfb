"""From a finished run's per-episode rows and totals to ``summary.json``, the per-episode
table and the per-class chart. Numbers here come only from the run's own records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from refseg_bench import records
from refseg_bench.replay import combined_kind, episode_kind
from refseg_bench.scorer import ScoreSummary, bootstrap_miou

N_BOOT = 1000


def unit_rows(plan, seed: int, fold: int) -> pd.DataFrame:
    rows = records.read_rows(plan.run_dir / records.unit_name(seed, fold))
    df = pd.DataFrame(sorted(rows.values(), key=lambda r: r["index"]))
    if df.empty:
        return df
    totals = np.array([t if t is not None else [0, 0, 0, 0] for t in df["totals"]], np.int64)
    df[["fg_inter", "fg_union", "bg_inter", "bg_union"]] = totals.reshape(-1, 4)
    df["iou"] = np.where(df["fg_union"] > 0, 100 * df["fg_inter"] / df["fg_union"].clip(lower=1),
                         np.nan)
    df.insert(0, "sampling_seed", seed)  # "seed" is the episode's annotation seed
    return df.drop(columns=["totals"])


def _interval(df: pd.DataFrame, strata: list[tuple[int, int]]) -> list[float]:
    """Class-stratified bootstrap over (fold, class) strata: for a single fold this is the
    fold mIoU's interval; over several folds with equal class counts, the mean's."""
    scored = df[df["skip"].isna()]
    key = scored["fold"].to_numpy() * 1_000_000 + scored["class_id"].to_numpy()
    lo, hi = bootstrap_miou(key, scored["fg_inter"].to_numpy(), scored["fg_union"].to_numpy(),
                            [f * 1_000_000 + c for f, c in strata], n_boot=N_BOOT, seed=0)
    return [float(lo), float(hi)]


def summarize(plan, method, units: dict[tuple[int, int], ScoreSummary], timing, device, world,
              elapsed: float) -> tuple[dict, pd.DataFrame]:
    """The run's summary and its per-episode table (every unit's rows, read once)."""
    cfg, ds = plan.cfg, plan.dataset
    frames, unit_out = [], []
    for (seed, fold), score in units.items():
        df = unit_rows(plan, seed, fold)
        frames.append(df)
        skips = df[df["skip"].notna()]["skip"] if not df.empty else pd.Series(dtype=str)
        classes = ds.classes(fold, cfg.split)
        manifest = plan.run_dir / records.unit_name(seed, fold) / "manifest.json"
        header = json.loads(manifest.read_bytes())["header"]
        unit_out.append({
            "seed": seed, "fold": fold,
            "manifest_sha256": manifest.with_suffix(".json.sha256").read_text().strip(),
            "episode_kind": episode_kind(header), "replay": header.get("replay"),
            "n_episodes": int(len(df)), "n_scored": int(score.n_episodes),
            "n_skipped": int(len(skips)), "skip_reasons": skips.value_counts().to_dict(),
            "miou": score.miou, "fbiou": score.fbiou,
            "ci95": _interval(df, [(fold, c) for c in classes]),
            "class_ids": [int(c) for c in classes],  # in the order of class_iou's names
            "class_iou": {ds.class_name(c): score.class_iou[c] for c in classes},
            "class_episodes": {ds.class_name(c): score.class_episodes[c] for c in classes},
            "unsampled_classes": [ds.class_name(c) for c in score.unsampled_classes],
        })
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    strata = sorted({(f, c) for f in plan.folds for c in ds.classes(f, cfg.split)})
    per_seed = {s: [u["miou"] for u in unit_out if u["seed"] == s] for s in plan.seeds}
    seed_means = [float(np.mean(v)) for v in per_seed.values()]
    folds = {}
    for f in plan.folds:
        us = [u for u in unit_out if u["fold"] == f]
        folds[str(f)] = {"miou": float(np.mean([u["miou"] for u in us])),
                         "fbiou": float(np.mean([u["fbiou"] for u in us])),
                         "ci95": us[0]["ci95"] if len(us) == 1 else None}
    summary = {
        "run_id": plan.run_dir.name,
        "run_dir": str(plan.run_dir),
        "complete": True,
        "method": cfg.method, "dataset": cfg.dataset, "split": cfg.split,
        "shot": int(cfg.shot), "annotation": cfg.annotation,
        "protocol": plan.protocol.to_dict(),
        # exact replay of the official loader's episodes, or the harness's rule-equivalent draw
        "episode_kind": combined_kind([u["episode_kind"] for u in unit_out]),
        "episodes_per_fold": plan.n_episodes, "seeds": plan.seeds, "folds": folds,
        "mean_miou": float(np.mean(seed_means)),
        "seed_std_miou": float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else None,
        "seed_aggregation": "mean over seeds" if len(seed_means) > 1 else "single seed",
        "mean_fbiou": float(np.mean([u["fbiou"] for u in unit_out])),
        "ci95": _interval(table, strata) if not table.empty else None,
        "method_info": _method_info(method),
        "dataset_info": ds.describe(),
        "units": unit_out,
        "timing": timing.as_dict(),
        "elapsed_s": elapsed,
        "world_size": world.size,
        "num_workers": int(cfg.num_workers),
        "environment": records.environment(device),
    }
    return summary, table


def _method_info(method) -> dict:
    """``describe()`` plus the parsed options; ``weights`` must be a trust kind."""
    from refseg_bench.trust import check_kind

    info = dict(method.describe())
    check_kind(info.get("weights", "none"))
    info.setdefault("options", getattr(method, "options", {}))
    return info


def write_outputs(plan, summary: dict, table: pd.DataFrame) -> None:
    out = plan.run_dir
    table.to_csv(out / "episodes.csv", index=False)
    plot_class_iou(summary, out / "class_iou.png")
    records.write_json(out / "summary.json", summary)


def plot_class_iou(summary: dict, path) -> None:
    """Horizontal bars of per-class IoU (mean over seeds), one colour per fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, values, colours = [], [], []
    for u in summary["units"]:
        if u["seed"] != summary["seeds"][0]:
            continue
        for name, iou in u["class_iou"].items():
            names.append(f"{name} (f{u['fold']})")
            values.append(iou if iou is not None else 0.0)
            colours.append(f"C{u['fold'] % 10}")
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.5))
    ax.barh(range(len(names)), values, color=colours)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.set_title(f"{summary['method']} on {summary['dataset']} ({summary['shot']}-shot, "
                 f"{summary['annotation']}): mIoU {summary['mean_miou']:.1f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
