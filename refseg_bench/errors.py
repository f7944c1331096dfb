"""Errors caused by the user's input (names, values, files). The CLI prints their message
without a traceback and exits with status 2; anything else is a bug and keeps its traceback.

This module imports nothing from the project, so every module can raise these.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and the valid range."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, has the wrong hash or the wrong keys."""


class RunInProgressError(RuntimeError):
    """Another process holds the lock of the same run (same run id in the same results_dir)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Every exception class the CLI reports as a user error (subclasses included)."""
    from refseg_bench.datasets.base import DatasetError
    from refseg_bench.registry import UnknownNameError
    from refseg_bench.sampler import SamplingError

    return (ConfigError, CheckpointError, DatasetError, UnknownNameError, SamplingError,
            RunInProgressError)
