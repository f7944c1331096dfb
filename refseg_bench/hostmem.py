"""How the process's C allocator treats freed host memory (``host_memory=`` setting).

glibc serves every allocation above 128 KiB-32 MiB with its own ``mmap`` and unmaps it on
free, so each large CPU tensor of every episode (features, attention maps, similarity
matrices) costs fresh zeroed pages from the kernel: on a CPU run of VRP-SAM that page
faulting was a quarter of the wall time (24 of 95 s system time). ``keep`` serves large
blocks from the heap and never trims it, so freed blocks are reused; the price is a peak
resident size that does not shrink during the run (about +12% on that run). ``release``
leaves glibc alone (its defaults, with the mmap threshold it adapts as blocks are freed).
No number changes either way: only where memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from refseg_bench.errors import ConfigError

POLICIES = ("keep", "release")

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
# Only to undo ``keep`` in the same process: setting any of these fixes glibc's adaptive
# mmap threshold at 128 KiB, which made a proto run twice as slow as untouched glibc.
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_THRESHOLD: 128 * 1024,
                   _M_MMAP_MAX: 65536}
_KEEP = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1}  # int: mallopt takes a C int
_state = "default"


@functools.cache
def _mallopt():
    """glibc's ``mallopt``, or None on a C library without it (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes, fn.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return fn


def apply(policy: str) -> str:
    """Set the allocator for ``policy`` (``keep`` or ``release``); returns what took effect:
    the policy, or ``unsupported`` where the C library has no ``mallopt``. ``release``
    touches nothing unless ``keep`` was applied earlier in this process."""
    global _state
    check(policy)
    if policy == "release" and _state != "keep":
        _state = "release"
        return _state
    fn = _mallopt()
    settings = _KEEP if policy == "keep" else _GLIBC_DEFAULTS
    ok = fn is not None and all(fn(param, value) == 1 for param, value in settings.items())
    _state = policy if ok else "unsupported"  # mallopt returns 1 on success
    return _state


def check(policy: str) -> str:
    """``policy`` when it is one of :data:`POLICIES`; a ConfigError naming them otherwise."""
    if policy not in POLICIES:
        raise ConfigError(f"host_memory must be one of {', '.join(POLICIES)}; got {policy!r}")
    return policy


def state() -> str:
    """What the last :func:`apply` set (recorded with a run's environment): ``keep``,
    ``release``, ``unsupported``, or ``default`` when nothing was applied."""
    return _state
