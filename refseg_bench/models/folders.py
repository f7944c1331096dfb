"""Checkpoint *folders*: catalogue entries made of several files (a diffusers model folder
such as Stable Diffusion's ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/`` and
``scheduler/``), each file with its own sha256 and size.

The folder lives at ``<checkpoint dir>/<file_name>`` with the files at their listed
relative paths. Verification hashes every listed file and compares it with its published
sha256 where there is one; the folder is ``official`` only when every file matched a
published hash, else ``unverified`` with every computed hash recorded. Fetching downloads
each file from ``<url>/<path>`` with the same resumable, hash-checked download as single
files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from refseg_bench.errors import CheckpointError
from refseg_bench.models.checkpoints import (
    CatalogueEntry,
    CatalogueFile,
    checkpoint_dir,
    resolve_checkpoint,
    sha256_file,
)


@dataclass(frozen=True)
class FolderInfo:
    """A verified folder: its path, the catalogue entry (None for a folder the catalogue
    does not know), ``sha256`` per relative path, and ``weights`` (``official`` when every
    listed file matched a published sha256, else ``unverified``) with a ``note`` why."""

    path: Path
    entry: CatalogueEntry | None
    sha256: dict[str, str] = field(default_factory=dict)
    weights: str = "unverified"
    note: str = ""

    def to_record(self) -> dict:
        return {"checkpoint": str(self.path), "catalogue_name": self.entry.name if self.entry
                else None, "weights": self.weights, "files_sha256": dict(self.sha256),
                "note": self.note}


def missing_files(path: Path, files: list[str]) -> list[str]:
    """The relative paths of ``files`` that are not regular files under ``path``."""
    return [f for f in files if not (Path(path) / f).is_file()]


def missing_in(ref: str | Path) -> list[str]:
    """What is missing of checkpoint ``ref`` (catalogue name or path): for a folder entry
    the paths of its absent files, for a file the file's path; empty when all present."""
    path, entry = resolve_checkpoint(ref)
    if entry is not None and entry.is_folder:
        return [str(path / f) for f in missing_files(path, [f.path for f in entry.files])]
    if entry is None and path.is_dir():
        return []  # a folder given by path: its loader checks the files it reads
    return [] if path.is_file() else [str(path)]


def verify_folder(ref: str | Path, required: list[str]) -> FolderInfo:
    """Resolve ``ref`` (a catalogue folder name or a folder path), check that every file in
    ``required`` (relative paths) is there and hash it; listed files with a published
    sha256 must match it. Raises CheckpointError naming each missing or mismatched file."""
    path, entry = resolve_checkpoint(ref)
    if entry is not None and not entry.is_folder:
        raise CheckpointError(f"checkpoint {entry.name} is a single file ({entry.file_name}), "
                              "expected a model folder")
    listed = {f.path: f for f in entry.files} if entry is not None else {}
    unlisted = [f for f in required if listed and f not in listed]
    if unlisted:
        raise CheckpointError(f"catalogue entry {entry.name} does not list {unlisted}; add "
                              "them to configs/checkpoints.yaml")
    missing = missing_files(path, required)
    if missing:
        hint = (f"fetch it with `refseg-bench checkpoints fetch {entry.name}`" if entry
                else "check the folder (diffusers layout expected)")
        raise CheckpointError(f"checkpoint folder {path} lacks {len(missing)} of "
                              f"{len(required)} files: {missing}; {hint}.")
    hashes, unpublished = {}, []
    for rel in required:
        hashes[rel] = sha256_file(path / rel)
        spec: CatalogueFile | None = listed.get(rel)
        if spec is None or spec.sha256 is None:
            unpublished.append(rel)
        elif hashes[rel] != spec.sha256.lower():
            raise CheckpointError(
                f"{path / rel} has sha256 {hashes[rel]}, expected {spec.sha256}: the file is "
                "truncated, corrupt or from a different release. Delete it and fetch again.")
    if not unpublished:
        return FolderInfo(path, entry, hashes, "official")
    note = ("folder not in the checkpoint catalogue" if entry is None else
            f"no published sha256 for {len(unpublished)} of {len(required)} files "
            f"({', '.join(unpublished[:3])}{', ...' if len(unpublished) > 3 else ''}); "
            "computed hashes recorded")
    return FolderInfo(path, entry, hashes, "unverified", note)


def folder_status(entry: CatalogueEntry, directory: Path, verify: bool) -> str:
    """``missing`` | ``partial (k of n files)`` | ``present (n files) ...`` with the hash
    state (``--verify`` hashes every file)."""
    root = Path(directory) / entry.file_name
    absent = missing_files(root, [f.path for f in entry.files])
    n = len(entry.files)
    if len(absent) == n:
        return "missing"
    if absent:
        return f"partial ({n - len(absent)} of {n} files)"
    published = [f for f in entry.files if f.sha256 is not None]
    if not verify:
        return f"present ({n} files; not hashed, use --verify)"
    bad = [f.path for f in published if sha256_file(root / f.path) != f.sha256]
    if bad:
        return f"present, sha256 MISMATCH in {bad}"
    if len(published) < n:
        return f"present ({n} files), sha256 ok for {len(published)}, {n - len(published)} " \
               "unverified (none published)"
    return f"present ({n} files), sha256 ok"


def fetch_folder(entry: CatalogueEntry, dest_dir: Path | None = None,
                 url_override: str | None = None, *, progress: bool = True) -> Path:
    """Download every file of folder ``entry`` from ``<url>/<path>`` into
    ``<dest_dir>/<file_name>/<path>`` (resuming, hash-checked per file); returns the
    folder. ``url_override`` replaces the base URL (a mirror of the same layout)."""
    from refseg_bench.models.download import download

    root = Path(dest_dir if dest_dir is not None else checkpoint_dir()) / entry.file_name
    base = (url_override or entry.url).rstrip("/")
    if not entry.direct_download and url_override is None:
        raise CheckpointError(f"{entry.name} cannot be downloaded automatically from "
                              f"{entry.url}; pass --url with a mirror of the folder. "
                              f"{entry.notes}")
    for f in entry.files:
        download(f"{base}/{f.path}", root / f.path, expected_sha256=f.sha256,
                 expected_size=f.size, progress=progress)
    return root
