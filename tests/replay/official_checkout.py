"""Running an official repository's loader in a subprocess, from a checkout named by an
environment variable (``HSNET_OFFICIAL_DIR``, ``PFENET_OFFICIAL_DIR``, ...).

The needed parts of the checkout are copied to a temporary folder (the official code reads
its lists relative to the working directory, and BAM / FSSAM write theirs there), and
``official_drivers.py`` runs there with that folder as working directory. A separate
process keeps the official ``data`` / ``common`` / ``util`` packages out of this one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVERS = Path(__file__).resolve().with_name("official_drivers.py")
REPOS = {
    "HSNET_OFFICIAL_DIR": ("github.com/juhongm999/hsnet", "data/pascal.py"),
    "PATNET_OFFICIAL_DIR": ("github.com/slei109/PATNet", "data/deepglobe.py"),
    "PFENET_OFFICIAL_DIR": ("github.com/dvlab-research/PFENet", "util/dataset.py"),
    "BAM_OFFICIAL_DIR": ("github.com/chunbolang/BAM", "util/get_weak_anns.py"),
    "FSSAM_OFFICIAL_DIR": ("github.com/Sam1224/FSSAM", "util/transform_new.py"),
    "VRPSAM_OFFICIAL_DIR": ("github.com/syp2ysy/VRP-SAM", "SAM2pred.py"),
}


def checkout(env: str) -> Path | None:
    """The checkout named by ``env`` if it holds the file that identifies the repository."""
    value = os.environ.get(env)
    if not value:
        return None
    path = Path(value).expanduser()
    return path if (path / REPOS[env][1]).is_file() else None


def needs(env: str):
    """Skip unless ``env`` names a checkout of its repository."""
    return pytest.mark.skipif(
        checkout(env) is None,
        reason=f"set {env} to a checkout of {REPOS[env][0]} to compare with its loader")


def copy_checkout(env: str, parts: list[str], dest: Path) -> Path:
    """Copy ``parts`` (folders or files) of the checkout to ``dest``."""
    src = checkout(env)
    dest.mkdir(parents=True, exist_ok=True)
    for part in parts:
        if (src / part).is_dir():
            shutil.copytree(src / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, dest / part)
    return dest


def run_driver(loader: str, workdir: Path, config: dict, timeout: int = 900) -> list:
    """Episodes printed by ``official_drivers.py LOADER`` run in ``workdir``."""
    path = workdir / "driver_config.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    done = subprocess.run([sys.executable, str(DRIVERS), loader, str(path)], cwd=workdir,
                          capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode:
        raise AssertionError(f"official {loader} run failed:\n{done.stderr[-6000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
