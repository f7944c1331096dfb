"""Where a run's record lives, and who may write it.

A run id is a *name*, never a path: ``<results_dir>/<run_id>`` is always a direct child of
``results_dir``, so ``overwrite=true`` can only ever remove that one directory. A run
holds an advisory lock (``<results_dir>/.locks/<run_id>.lock``, ``fcntl.flock``) while it
writes, so a second process started on the same run is refused instead of evaluating
every episode a second time into the same rows; runs with other ids are not affected.
The lock lives outside the run directory so ``overwrite`` never deletes a held lock, and
the kernel releases it when its process dies, even by SIGKILL.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

from refseg_bench.errors import ConfigError, RunInProgressError

RUN_ID_RULE = ("a run id is a name, not a path: 1 to 128 letters, digits, '.', '_' or '-', "
               "starting with a letter or digit")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LOCK_DIR = ".locks"


def check_run_id(run_id: str) -> str:
    """``run_id`` itself when it is a plain name; ConfigError naming the rule otherwise
    (``.``, ``..``, ``../x``, ``/abs``, ``a/b``, hidden names, spaces...)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"run_id={run_id!r} is not allowed: {RUN_ID_RULE}.")
    return run_id


def run_path(results_dir: str | Path, run_id: str) -> Path:
    """``<results_dir>/<run_id>`` for a checked ``run_id``."""
    return Path(results_dir).expanduser() / check_run_id(run_id)


def remove_run_dir(run_dir: Path) -> None:
    """Delete one run's record (``overwrite=true``), and nothing else.

    Refused (ConfigError) for a symlink and for a directory that is not a run record (no
    ``config.yaml`` and not empty), e.g. ``results_dir=~ run_id=Documents``.
    """
    if run_dir.is_symlink():
        raise ConfigError(f"{run_dir} is a symbolic link, not a run record; overwrite=true "
                          "only deletes a run's own directory. Remove the link yourself or "
                          "choose another run_id.")
    if not run_dir.exists():
        return
    if not run_dir.is_dir() or (not (run_dir / "config.yaml").is_file()
                                and any(run_dir.iterdir())):
        raise ConfigError(f"{run_dir} is not a run record (no config.yaml); overwrite=true "
                          "refuses to delete it. Choose another run_id or results_dir.")
    shutil.rmtree(run_dir)


class RunLock:
    """Exclusive, non-blocking advisory lock on one run id (see the module docstring).

    ``acquire`` raises RunInProgressError when another process holds it; where ``fcntl``
    is missing (not POSIX) locking is skipped. The lock file keeps the holder's pid and
    host so the refusal can name them.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir.parent / LOCK_DIR / f"{run_dir.name}.lock"
        self._fh = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunInProgressError(
                f"run {self.run_dir.name} is already running in {holder}, writing "
                f"{self.run_dir}. Wait for it to finish (rerunning then resumes or reprints "
                "its record), stop it, or choose another run_id.") from err
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the descriptor drops the flock
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
