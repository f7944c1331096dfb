"""Errors caused by the user's input (names, values, files). The CLI prints their message
without a traceback and exits with status 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

from refseg_bench.datasets.base import DatasetError
from refseg_bench.registry import UnknownNameError
from refseg_bench.sampler import SamplingError


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and the valid range."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, has the wrong hash or the wrong keys."""


# Every exception class the CLI reports as a user error. Modules that define their own
# user-facing errors subclass one of these.
UserError = (ConfigError, CheckpointError, DatasetError, UnknownNameError, SamplingError)
