"""Checkpoint catalogue, hashing and strict loading.

The catalogue (``configs/checkpoints.yaml``) names every official weight file the methods
need: URL, file name, sha256 (null where no source publishes one), size and licence. An
entry may instead name a *folder* of several files (a diffusers model folder): then it
lists each file with its own sha256 and size (:mod:`refseg_bench.models.folders`).
Loading always uses ``torch.load(weights_only=True)`` and strict keys; every failure is a
:class:`~refseg_bench.errors.CheckpointError` that says what was expected, what was found
and what to do. Downloading lives in :mod:`refseg_bench.models.download`; :func:`fetch` is
the catalogue-level entry point.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.models.provenance import WeightsInfo
from refseg_bench.trust import file_kind

CHECKPOINTS_ENV = "REFSEG_BENCH_CHECKPOINTS"
_HASH_CHUNK = 1 << 22  # 4 MiB reads: hashing a 2.5 GB file stays I/O bound


@dataclass(frozen=True)
class CatalogueFile:
    """One file of a folder entry: ``path`` relative to the folder (``/``-separated),
    ``sha256`` (None when not published) and ``size`` in bytes (None when unknown)."""

    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class CatalogueEntry:
    """One official checkpoint file.

    ``size`` is in bytes (None when unknown); ``sha256`` is None when no source publishes
    one, and then loaders record the computed hash and mark the weights ``unverified``.
    ``state_dict_key`` names the entry holding the weights inside the file (SAM 2 files
    store them under ``"model"``), None when the file is the state dict itself.
    ``direct_download`` is False when ``url`` is a web page or folder to fetch by hand.

    A folder entry has ``files``: ``file_name`` is then the folder's name in the checkpoint
    directory, ``url`` the base URL each file's ``path`` is appended to, and the top-level
    ``sha256`` and ``size`` are None (each file carries its own).
    """

    name: str
    family: str
    variant: str
    url: str
    file_name: str
    sha256: str | None
    size: int | None
    licence: str
    sha256_source: str
    state_dict_key: str | None = None
    direct_download: bool = True
    notes: str = ""
    files: tuple[CatalogueFile, ...] = ()

    @property
    def is_folder(self) -> bool:
        return bool(self.files)


@lru_cache(maxsize=1)
def catalogue() -> dict[str, CatalogueEntry]:
    """All entries of the packaged ``configs/checkpoints.yaml``, by name."""
    from omegaconf import OmegaConf

    text = resources.files("refseg_bench.configs").joinpath("checkpoints.yaml").read_text()
    raw = OmegaConf.to_container(OmegaConf.create(text), resolve=True)["checkpoints"]
    known = {f.name for f in fields(CatalogueEntry)}
    out = {}
    for name, body in raw.items():
        extra = set(body) - known
        if extra:
            raise ValueError(f"checkpoints.yaml entry {name!r} has unknown keys {sorted(extra)}")
        out[name] = CatalogueEntry(name=name, **{**body, "files": _files(name, body)})
    return out


def _files(name: str, body: dict) -> tuple[CatalogueFile, ...]:
    """The ``files`` mapping (path -> {sha256, size}) of a folder entry, checked."""
    files = body.get("files") or {}
    known = {f.name for f in fields(CatalogueFile)} - {"path"}
    out = []
    for path, spec in files.items():
        spec = spec or {}
        if set(spec) - known:
            raise ValueError(f"checkpoints.yaml entry {name!r}, file {path!r}: unknown keys "
                             f"{sorted(set(spec) - known)} (expected {sorted(known)})")
        out.append(CatalogueFile(path=path, **spec))
    if out and (body.get("sha256") is not None or body.get("size") is not None):
        raise ValueError(f"checkpoints.yaml folder entry {name!r} lists files: its top-level "
                         "sha256 and size must be null (each file has its own)")
    return tuple(out)


def catalogue_entry(name: str) -> CatalogueEntry:
    """The entry called ``name``; an unknown name lists the known ones."""
    from refseg_bench.registry import UnknownNameError

    entries = catalogue()
    if name not in entries:
        raise UnknownNameError(
            f"unknown checkpoint {name!r}. Known checkpoints: {', '.join(sorted(entries))} "
            "(see `refseg-bench checkpoints`)."
        )
    return entries[name]


def entry_for_file(path: str | Path) -> CatalogueEntry | None:
    """The catalogue entry whose file name equals ``path``'s name, if any."""
    name = Path(path).name
    return next((e for e in catalogue().values() if e.file_name == name), None)


def checkpoint_dir() -> Path:
    """``$REFSEG_BENCH_CHECKPOINTS`` if set, else ``~/.cache/refseg-bench/checkpoints``."""
    env = os.environ.get(CHECKPOINTS_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "refseg-bench" / "checkpoints"


def resolve_checkpoint(ref: str | Path) -> tuple[Path, CatalogueEntry | None]:
    """A catalogue name (looked up in :func:`checkpoint_dir`) or a file path.

    Returns the path and the catalogue entry that describes it (by name, or by file name
    for an explicit path), or None for a file the catalogue does not know.
    """
    if isinstance(ref, str) and ref in catalogue():
        entry = catalogue()[ref]
        return checkpoint_dir() / entry.file_name, entry
    path = Path(ref).expanduser()
    return path, entry_for_file(path)


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, memoised per (path, size, mtime) for this process."""
    path = Path(path)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _HASH_MEMO:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        _HASH_MEMO[memo_key] = digest.hexdigest()
    return _HASH_MEMO[memo_key]


def _missing_file_error(path: Path) -> CheckpointError:
    entry = entry_for_file(path)
    hint = (f"download it with `refseg-bench checkpoints fetch {entry.name}`"
            if entry else "check the path")
    return CheckpointError(
        f"checkpoint file {path} does not exist; {hint} (checkpoint directory: "
        f"{checkpoint_dir()}, set ${CHECKPOINTS_ENV} to change it)."
    )


def load_state_dict(
    path: str | Path, expected_sha256: str | None = None, *, key: str | None = None
) -> dict[str, torch.Tensor]:
    """Load a state dict onto the CPU with ``weights_only=True``.

    ``expected_sha256`` (hex) is checked before unpickling anything. ``key`` selects a
    nested entry (e.g. ``"model"`` for SAM 2 files). Raises CheckpointError when the file
    is missing, has the wrong hash, is truncated or corrupt, holds non-tensor objects, or
    is not a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing_file_error(path)
    if expected_sha256 is not None:
        found = sha256_file(path)
        if found != expected_sha256.lower():
            raise CheckpointError(
                f"checkpoint {path} has sha256 {found}, expected {expected_sha256}: the file "
                "is truncated, corrupt or a different release. Delete it and fetch it again."
            )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
            OSError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. The file "
            "is truncated or corrupt, or holds objects other than tensors (only weights-only "
            "files are accepted). Delete it and fetch it again."
        ) from err
    return _as_state_dict(obj, path, key)


def _as_state_dict(obj: object, path: Path, key: str | None) -> dict[str, torch.Tensor]:
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(
                f"checkpoint {path} should hold its weights under key {key!r}; found {found}."
            )
        obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__
        raise CheckpointError(
            f"checkpoint {path} is a {kind}, expected a state dict (names -> tensors). If the "
            "weights are nested (e.g. under 'model' or 'state_dict'), pass key=..."
        )
    return remove_prefixes(obj, ())


def remove_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]
                    ) -> OrderedDict[str, torch.Tensor]:
    """Remove each leading prefix in ``prefixes`` (in order) from every key that has it.

    PyTorch's per-module version metadata (``_metadata``) is kept, with the same prefixes
    removed, because BatchNorm and others use it to load files from older releases.
    """

    def strip(key: str) -> str:
        for p in prefixes:
            key = key.removeprefix(p)
        return key

    out = OrderedDict((strip(k), v) for k, v in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = OrderedDict((strip(k), v) for k, v in metadata.items())
    return out


def _listing(keys: list[str], limit: int) -> str:
    shown = ", ".join(keys[:limit])
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{len(keys)}: [{shown}{more}]"


def load_strict(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    strip_prefixes: tuple[str, ...] = ("module.",),
    limit: int = 8,
) -> None:
    """Load ``state_dict`` into ``module`` requiring exactly its keys and shapes.

    ``strip_prefixes`` are removed first (DDP checkpoints prefix every key with
    ``module.``). A missing BatchNorm ``num_batches_tracked`` counter is not an error
    (PyTorch fills it in for files from older releases). On a mismatch raises
    CheckpointError naming the first ``limit`` missing, unexpected and wrongly shaped keys
    with their counts.
    """
    sd = remove_prefixes(state_dict, strip_prefixes)
    own = module.state_dict()
    # BatchNorm fills in a missing step counter itself (files saved before PyTorch 0.4.1).
    missing = sorted(k for k in set(own) - set(sd) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(sd) if sd[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = [f"missing keys {_listing(missing, limit)}" if missing else "",
                 f"unexpected keys {_listing(unexpected, limit)}" if unexpected else "",
                 f"wrong shapes (file vs model) {_listing(shapes, limit)}" if shapes else ""]
        raise CheckpointError(
            f"state dict does not fit {type(module).__name__}: "
            + "; ".join(p for p in parts if p)
            + ". Check that the checkpoint is for this architecture and variant (and image "
            "size), or that a key prefix needs stripping."
        )
    module.load_state_dict(sd, strict=True)


def load_checkpoint_into(
    module: torch.nn.Module,
    checkpoint: str | Path,
    *,
    model: str,
    key: str | None = None,
    prefixes: tuple[str, ...] = ("module.",),
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> WeightsInfo:
    """Resolve, verify, load strictly and describe a checkpoint for ``module``.

    ``checkpoint`` is a catalogue name or a path. The file's sha256 is always computed (it
    goes into run records). A catalogue file with a published sha256 must match it
    (``weights="official"``); otherwise the weights are ``unverified``. ``key`` defaults to
    the catalogue entry's ``state_dict_key``. ``prefixes`` are stripped, then ``convert``
    (an explicit key renaming, e.g. official names to ours) is applied before the strict
    load. The trust kind follows :func:`refseg_bench.trust.file_kind`.
    """
    path, entry = resolve_checkpoint(checkpoint)
    expected = entry.sha256 if entry else None
    if key is None and entry is not None:
        key = entry.state_dict_key
    state_dict = remove_prefixes(load_state_dict(path, expected, key=key), prefixes)
    if convert is not None:
        state_dict = convert(state_dict)
    load_strict(module, state_dict, strip_prefixes=())
    sha = sha256_file(path)
    kind, published = file_kind(sha)  # official only on a published sha256, by hash
    if kind == "official":
        note = ""
    elif entry is None:
        note = "file not in the checkpoint catalogue"
    else:
        note = f"no published sha256 for {entry.name}; computed hash recorded"
    return WeightsInfo(
        model=model, weights=kind, checkpoint=str(path), sha256=sha,
        catalogue_name=published or (entry.name if entry else None), note=note,
    )


def fetch(name: str, dest_dir: str | Path | None = None, url_override: str | None = None,
          *, progress: bool = True) -> Path:
    """Download catalogue checkpoint ``name`` into ``dest_dir`` (default
    :func:`checkpoint_dir`), resuming a ``.part`` file and checking the sha256; returns the
    final path (a folder entry: every listed file, then the folder's path). See
    :func:`refseg_bench.models.download.download`."""
    from refseg_bench.models.download import download

    entry = catalogue_entry(name)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else checkpoint_dir()
    if entry.is_folder:
        from refseg_bench.models.folders import fetch_folder

        return fetch_folder(entry, dest, url_override, progress=progress)
    if not entry.direct_download and url_override is None:
        raise CheckpointError(
            f"{name} cannot be downloaded automatically: {entry.url} is not a direct file link. "
            f"Download {entry.file_name} by hand into {dest} (or pass --url with a direct "
            f"link). {entry.notes}"
        )
    return download(url_override or entry.url, dest / entry.file_name,
                    expected_sha256=entry.sha256, expected_size=entry.size, progress=progress)
