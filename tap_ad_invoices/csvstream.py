"""Read a CSV download as a stream of rows, never the whole file in memory.

Handles what real report downloads contain: a gzip wrapper (sniffed from the
bytes, not trusted from headers), UTF-8 with or without BOM, CRLF, quoted
fields holding commas and newlines, and blank lines.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from collections.abc import Iterable, Iterator
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"


class ChunkStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (an HTTP body as it arrives)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def open_maybe_gzip(chunks: Iterable[bytes]) -> BinaryIO:
    """A byte stream over `chunks`, inflated on the fly when the bytes are gzip."""
    remaining = iter(chunks)
    head = b""
    for chunk in remaining:  # enough bytes to sniff, whatever the chunk sizes
        head += chunk
        if len(head) >= len(GZIP_MAGIC):
            break
    buffered = io.BufferedReader(ChunkStream(itertools.chain([head], remaining)), 1 << 16)
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered


def iter_csv_dicts(chunks: Iterable[bytes]) -> Iterator[tuple[list[str], list[str]]]:
    """Yield (header, row) for each non-blank data row; header is the first non-blank row.

    Rows shorter than the header are padded with ""; longer rows keep their
    extra cells under generated names, so nothing is dropped.
    """
    text = io.TextIOWrapper(open_maybe_gzip(chunks), encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    header: list[str] | None = None
    for cells in reader:
        if not cells or all(not c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            continue
        if len(cells) < len(header):
            cells = cells + [""] * (len(header) - len(cells))
        elif len(cells) > len(header):
            header = header + [f"column_{i + 1}" for i in range(len(header), len(cells))]
        yield header, cells
