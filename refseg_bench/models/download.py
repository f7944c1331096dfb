"""Resumable, hash-checked HTTP download of one file (standard library only, plus rich for
the progress bar).

Bytes go to ``<dest>.part``; an interrupted download resumes from the part file's length
with an HTTP ``Range`` request (a server that ignores it makes us start over). The file is
renamed to ``dest`` only after its size and sha256 check out, so ``dest`` is never a
partial file.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from contextlib import nullcontext
from pathlib import Path

from refseg_bench.errors import CheckpointError

_CHUNK = 1 << 20  # 1 MiB


def part_path(dest: Path) -> Path:
    """Where the bytes of an unfinished download of ``dest`` are kept."""
    return dest.with_name(dest.name + ".part")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK * 4):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float):
    """The response for ``url`` from byte ``offset``; None when the server says the range
    is past the end (HTTP 416: the part file is already complete)."""
    request = urllib.request.Request(url, headers={"User-Agent": "refseg-bench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return None
        raise CheckpointError(
            f"downloading {url} failed: HTTP {err.code} {err.reason}. Check the URL (pass "
            "--url to use a mirror) or download the file by hand."
        ) from err


def _progress(enabled: bool, name: str):
    if not enabled:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), transient=False)


def _stream(response, part: Path, offset: int, progress: bool, name: str) -> None:
    """Append (HTTP 206) or rewrite (HTTP 200: range ignored) ``part`` from ``response``."""
    resumed = offset > 0 and response.status == 206
    start = offset if resumed else 0
    length = response.headers.get("Content-Length")
    total = start + int(length) if length is not None else None
    with _progress(progress, name) as bar, part.open("ab" if resumed else "wb") as f:
        task = bar.add_task(name, total=total, completed=start) if bar else None
        while chunk := response.read(_CHUNK):
            f.write(chunk)
            if bar:
                bar.update(task, advance=len(chunk))


def download(
    url: str,
    dest: str | Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part``; return ``dest``.

    An existing ``dest`` is checked, not downloaded again. ``expected_size`` (bytes) and
    ``expected_sha256`` (hex) are checked before the final rename; a hash mismatch
    deletes the part file (resuming cannot repair it) and raises CheckpointError, as do
    HTTP and network errors (the part file is kept so the next call resumes).
    """
    dest = Path(dest)
    if dest.exists():
        found = _sha256(dest) if expected_sha256 else None
        if expected_sha256 and found != expected_sha256.lower():
            raise CheckpointError(
                f"{dest} already exists with sha256 {found}, expected {expected_sha256}. "
                "Delete it and fetch again."
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()  # longer than the real file: not a prefix of it
        offset = 0
    try:
        response = _open(url, offset, timeout)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise _network_error(url, err, part, connected=False) from err
    if response is not None:
        try:
            with response:
                _stream(response, part, offset, progress, dest.name)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise _network_error(url, err, part, connected=True) from err
    _verify_part(part, dest, expected_sha256, expected_size)
    part.replace(dest)
    return dest


def _network_error(url: str, err: OSError, part: Path, *, connected: bool) -> CheckpointError:
    """What happened, in the user's terms: no connection at all (DNS, refused, timeout), or
    a transfer cut midway; and what is kept on disk, only if something is."""
    reason = getattr(err, "reason", None) or err
    host = urllib.parse.urlsplit(url).hostname
    kept = part.stat().st_size if part.exists() else 0
    on_disk = (f"{kept} bytes already downloaded are kept in {part}; run the same command "
               "again to resume." if kept else "Nothing was written.")
    if not connected:
        return CheckpointError(
            f"cannot connect to {host} to download {url} ({reason}). Check the network "
            f"connection and the host name, or pass --url to use a mirror. {on_disk}")
    return CheckpointError(f"downloading {url} was interrupted ({reason}). {on_disk}")


def _verify_part(part: Path, dest: Path, expected_sha256: str | None,
                 expected_size: int | None) -> None:
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        raise CheckpointError(
            f"download of {dest.name} has {size} bytes, expected {expected_size}; the part "
            f"file {part} is kept. Run the same command again to resume."
        )
    if expected_sha256 is not None:
        found = _sha256(part)
        if found != expected_sha256.lower():
            part.unlink()
            raise CheckpointError(
                f"download of {dest.name} has sha256 {found}, expected {expected_sha256}; "
                "the corrupt part file was deleted. Fetch again, or check that the URL "
                "serves this exact release."
            )
