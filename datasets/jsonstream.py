"""Read the top-level members of a large JSON object one array element at a time.

COCO's ``instances_train2014.json`` (about 450 MB) and LVIS's ``lvis_v1_train.json``
(about 1 GB) become several GB of Python objects under ``json.load``. ``iter_members``
keeps only one element (plus a read buffer) in memory: members named in ``stream`` that
hold an array are yielded element by element, all other members whole.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from refseg_bench.datasets.base import DatasetError

CHUNK_CHARS = 1 << 20
# A single element larger than this is treated as corrupt rather than read to the end of
# the file (a COCO annotation is at most a few hundred kB).
MAX_ELEMENT_CHARS = 64 << 20
_WS = " \t\n\r"


class _Reader:
    """A growing text window over the file; ``pos`` indexes into ``buf``."""

    def __init__(self, f, path: Path) -> None:
        self.f, self.path = f, path
        self.buf, self.pos = "", 0
        self.offset, self.lines = 0, 0  # chars and newlines dropped from the front of buf
        self.eof = False
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.f.read(CHUNK_CHARS)
        except UnicodeDecodeError as err:
            raise DatasetError(f"{self.path} is not UTF-8 text ({err}); it is not a JSON "
                               "annotation file or it is corrupt. Re-extract it.") from err
        if not chunk:
            self.eof = True
            return False
        if self.pos:  # drop what has been consumed, keeping line numbers right
            self.lines += self.buf.count("\n", 0, self.pos)
            self.offset += self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        self.buf += chunk
        return True

    def peek(self) -> str:
        """Next non-whitespace character ('' at end of file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, allowed: str, context: str) -> str:
        c = self.peek()
        if not c or c not in allowed:
            shown = repr(c) if c else "end of file"
            self.fail(f"expected {' or '.join(map(repr, allowed))} {context}, found {shown}",
                      self.pos)
        self.pos += 1
        return c

    def value(self) -> Any:
        """Decode the JSON value starting at the next non-whitespace character."""
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if self.eof or len(self.buf) - self.pos > MAX_ELEMENT_CHARS:
                    self.fail(err.msg, err.pos)
                self._fill()
                continue
            # A value that touches the end of the window may be cut short (a number).
            if end < len(self.buf) or self.eof or not self._fill():
                self.pos = end
                return obj

    def fail(self, msg: str, pos: int):
        line = self.lines + self.buf.count("\n", 0, pos) + 1
        col = pos - (self.buf.rfind("\n", 0, pos) + 1) + 1
        raise DatasetError(
            f"corrupt JSON in {self.path}: {msg} at line {line} column {col} (char "
            f"{self.offset + pos}). The file is truncated or damaged: download or extract "
            f"it again."
        )


def iter_members(path: str | Path, stream: Collection[str] = ()) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, value)`` for each member of the top-level JSON object in ``path``.

    For a key in ``stream`` whose value is an array, yields ``(key, element)`` once per
    element instead, in file order. Raises ``DatasetError`` naming the file, line and column
    when the file is not a well-formed JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    with open(path, encoding="utf-8") as f:
        r = _Reader(f, path)
        r.expect("{", "at the start of the file (a JSON object)")
        if r.peek() == "}":
            r.pos += 1
        else:
            yield from _members(r, set(stream))
        if r.peek():
            r.fail("extra data after the top-level object", r.pos)


def _members(r: _Reader, stream: set[str]) -> Iterator[tuple[str, Any]]:
    while True:
        if r.peek() != '"':
            r.fail("expected a member name in double quotes", r.pos)
        key = r.value()
        r.expect(":", f"after member name {key!r}")
        if key in stream and r.peek() == "[":
            r.pos += 1
            yield from ((key, v) for v in _elements(r, key))
        else:
            yield key, r.value()
        if r.expect(",}", f"after the value of {key!r}") == "}":
            return


def _elements(r: _Reader, key: str) -> Iterator[Any]:
    if r.peek() == "]":
        r.pos += 1
        return
    while True:
        yield r.value()
        if r.expect(",]", f"between elements of {key!r}") == "]":
            return
