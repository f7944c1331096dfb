"""Errors caused by the user's input (names, values, files) or by the environment, and the
exit status the CLI gives each kind.

The CLI prints one line for each (no traceback) and exits with:
``EXIT_USER_ERROR`` (2) for a user error, ``EXIT_INTERRUPTED`` (130, the shell's code for
Ctrl-C) for an interrupt and ``EXIT_IO_ERROR`` (74, ``EX_IOERR`` of sysexits.h) for an
I/O fault such as a read-only or full results directory. Anything else is a bug and
keeps its traceback (exit 1).

This module imports nothing from the project, so every module can raise these.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_IO_ERROR = 74
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and the valid range."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, has the wrong hash or the wrong keys."""


class RunInProgressError(RuntimeError):
    """Another process holds the lock of the same run (same run id in the same results_dir)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. A KeyboardInterrupt (code that catches those still does), with
    how far the run got: ``done`` of ``total`` episodes are saved and a rerun resumes."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(done, total)
        self.done, self.total = done, total

    def __str__(self) -> str:
        return (f"interrupted at {self.done}/{self.total} episodes; rerun the same command "
                "to resume")


def user_errors() -> tuple[type[BaseException], ...]:
    """Every exception class the CLI reports as a user error (subclasses included)."""
    from refseg_bench.datasets.base import DatasetError
    from refseg_bench.registry import UnknownNameError
    from refseg_bench.sampler import SamplingError

    return (ConfigError, CheckpointError, DatasetError, UnknownNameError, SamplingError,
            RunInProgressError)
