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
flight. A last line cut by the kill is removed when the run resumes (that episode is
simply redone), so the rows file stays one whole row per finished episode.
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

from refseg_bench import hostmem
from refseg_bench.errors import ConfigError

# Settings that change how fast a run goes, never its numbers: not part of its identity.
RUNTIME_KEYS = ("batch_size", "num_workers", "progress", "results_dir", "overwrite", "run_id",
                "save_predictions", "device", "host_memory")
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
    OmegaConf.save(cfg, saved, resolve=True)


class RowWriter:
    """Append-only JSONL writer, flushed and fsynced per ``write`` call. Opening it removes
    a last line cut by a kill or a full disk (bytes after the last newline)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._failed = False
        if path.exists():
            drop_cut_last_line(path)
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, rows: list[dict]) -> None:
        try:
            self._f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as err:  # a write error names no file; say which one
            self._failed = True
            raise OSError(err.errno, err.strerror, str(self.path)) from err

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:
            if not self._failed:  # else: the same failed flush, already raised by write()
                raise


def drop_cut_last_line(path: Path, block: int = 1 << 16) -> int:
    """Truncate ``path`` after its last newline; returns the number of bytes removed.

    Reads backwards from the end in ``block``-byte steps, so a long rows file is not read
    whole; a file without any newline is emptied.
    """
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
        return size - keep


def read_rows(unit_dir: Path) -> dict[int, dict]:
    """Finished rows of a unit from every rank's file, keyed by episode index.

    A line that does not parse (a write cut by a kill, before a resume removed it) is
    skipped; so is a duplicate index (kept once), so a resumed run never double-counts an
    episode.
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


def episodes_done(plan) -> tuple[int, int]:
    """``(finished, total)`` episodes of a run on disk, over all its units (a ``RunPlan``:
    ``run_dir``, ``seeds``, ``folds``, ``n_episodes``). A unit without a manifest yet
    counts ``n_episodes``; one with a manifest counts its length."""
    done = total = 0
    for seed in plan.seeds:
        for fold in plan.folds:
            unit_dir = plan.run_dir / unit_name(seed, fold)
            done += len(read_rows(unit_dir))
            manifest = unit_dir / "manifest.json"
            total += (json.loads(manifest.read_bytes())["header"]["n_episodes"]
                      if manifest.is_file() else plan.n_episodes)
    return done, total


def announce_resume(plan) -> None:
    """Say on stderr that a run resumes, and how far it had got (nothing for a new run)."""
    import sys

    done, total = episodes_done(plan)
    if done:
        print(f"resuming run {plan.run_dir.name}: {done}/{total} episodes already done "
              f"(kept in {plan.run_dir}; overwrite=true starts again)", file=sys.stderr,
              flush=True)


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


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None where not installed)."""
    out = {}
    for name in names:
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
        "host_memory": hostmem.state(),
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
