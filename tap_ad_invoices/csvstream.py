"""Read a CSV download as a stream of rows, never the whole file in memory.

Handles what real report downloads contain: a gzip wrapper (sniffed from the
bytes, not trusted from headers), UTF-8 with or without BOM, CRLF, quoted
fields holding commas and newlines, and blank lines. Refuses what would lose
or shift a row (`MalformedCsv`).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


class MalformedCsv(ValueError):
    """The file is not a well-formed CSV: rows would be lost or misread. Names the row."""


@dataclass(frozen=True)
class CsvRow:
    number: int  # 1 = the first data row after the header
    line: int  # physical line where the row ends (quoted newlines count)
    header: list[str]
    cells: list[str]


def iter_csv_rows(chunks: Iterable[bytes]) -> Iterator[CsvRow]:
    """Yield each non-blank data row; the header is the first non-blank row.

    Strict, because every row must be accounted for: an unclosed quote, a row
    with more or fewer cells than the header, or a cell past the csv module's
    field limit raise `MalformedCsv` naming the row — never a padded or
    swallowed row.
    """
    text = io.TextIOWrapper(open_maybe_gzip(chunks), encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    header: list[str] | None = None
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise MalformedCsv(
                f"row {number + 1} (line {reader.line_num}): {exc} "
                "(an unclosed quote, or a cell over the size limit)"
            ) from None
        if not cells or all(not c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            continue
        number += 1
        if len(cells) != len(header):
            raise MalformedCsv(
                f"row {number} (line {reader.line_num}): {len(cells)} cell(s), "
                f"the header has {len(header)}"
            )
        yield CsvRow(number, reader.line_num, header, cells)
