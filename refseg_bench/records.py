"""Run records on disk: ``results/<run_id>/``.

Layout::

    config.yaml                 resolved config (identity of the run)
    summary.json                metrics + provenance, written when the run completes
    episodes.csv                per-episode table of all units
    class_iou.png               per-class IoU bar chart
    seed<S>_fold<F>/manifest.json (+ .sha256)
    seed<S>_fold<F>/rows-rank<R>.jsonl   append-only per-episode rows (resume source)
    predictions/seed<S>_fold<F>/<index>.png  when save_predictions=true

Rows are appended and flushed per batch; a run killed midway loses at most the batch in
flight, and a truncated last line is ignored (that episode is simply redone).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from refseg_bench.errors import ConfigError

# Settings that change how fast a run goes, never its numbers: not part of its identity.
RUNTIME_KEYS = ("batch_size", "num_workers", "progress", "results_dir", "overwrite", "run_id",
                "save_predictions", "device")
PACKAGES = ("refseg-bench", "torch", "torchvision", "numpy", "segment-anything", "sam2",
            "omegaconf", "pycocotools", "diffusers")


def identity(cfg: DictConfig) -> dict:
    d = OmegaConf.to_container(cfg, resolve=True)
    for k in RUNTIME_KEYS:
        d.pop(k, None)
    return d


def default_run_id(cfg: DictConfig, protocol: str) -> str:
    digest = hashlib.sha256(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.method}_{cfg.dataset}_{protocol}_{cfg.shot}shot_{cfg.annotation}_{digest}"


def unit_name(seed: int, fold: int) -> str:
    return f"seed{seed}_fold{fold}"


def prepare_run_dir(run_dir: Path, cfg: DictConfig, overwrite: bool) -> None:
    """Create the run dir, or check that an existing one belongs to the same settings."""
    from refseg_bench.rundir import remove_run_dir

    saved = run_dir / "config.yaml"
    if overwrite:
        remove_run_dir(run_dir)
    if saved.exists():
        old = identity(OmegaConf.load(saved))
        if old != identity(cfg):
            raise ConfigError(
                f"{run_dir} holds a run with other settings; choose another run_id or pass "
                "overwrite=true to discard it."
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, saved)


class RowWriter:
    """Append-only JSONL writer, flushed and fsynced per ``write`` call."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cut = path.exists() and path.stat().st_size and _last_byte(path) != b"\n"
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if cut:  # a write cut by a kill: end that line so it stays a lone unparsable one
            self._f.write("\n")

    def write(self, rows: list[dict]) -> None:
        self._f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def read_rows(unit_dir: Path) -> dict[int, dict]:
    """Finished rows of a unit from every rank's file, keyed by episode index.

    A line that does not parse (a write cut by a kill) is dropped; so is a duplicate index
    (kept once), so a resumed run never double-counts an episode.
    """
    rows: dict[int, dict] = {}
    for path in sorted(unit_dir.glob("rows-rank*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows.setdefault(int(row["index"]), row)
    return rows


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout
        return out + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(device) -> dict:
    import torch

    dev = {"type": device.type}
    if device.type == "cuda":
        dev["name"] = torch.cuda.get_device_name(device)
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": dev,
        "torch_threads": torch.get_num_threads(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


@dataclass(frozen=True)
class RunLocation:
    results_dir: Path
    run_id: str

    @property
    def path(self) -> Path:
        return self.results_dir / self.run_id
