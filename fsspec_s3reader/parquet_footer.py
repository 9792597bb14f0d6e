"""Where a parquet file's column chunks lie, read from its footer: the map a reader of parquet prefetches by.

A parquet file ends with its metadata, then the metadata's length and the
magic ``PAR1``::

    [ row group 0: chunk c00 | chunk c01 | ... ][ row group 1: ... ] ... [ footer ][ length: 4 bytes LE ][ PAR1 ]

The footer is a Thrift ``FileMetaData`` in the compact protocol. Only what
says where the bytes are is decoded here: for each row group, each column
chunk's path and its byte range (from its dictionary page, if any, through
its last data page). Pure: no pyarrow, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAGIC = b"PAR1"
TRAILER = 8
"""The footer's length (4 bytes) and the magic (4 bytes) after it."""


class FooterError(ValueError):
    """The bytes are not a parquet footer this parser can read."""


@dataclass(frozen=True)
class ColumnChunk:
    """One column chunk of one row group: the bytes ``[start, end)`` of the file."""

    row_group: int
    column: str
    """The column's dotted path in the schema (``a.b`` for a nested field)."""
    start: int
    end: int


def footer_span(trailer: bytes, object_size: int) -> tuple[int, int] | None:
    """Where the footer lies, ``(start, end)``, from the file's last 8 bytes; None when they are not parquet's."""
    if len(trailer) != TRAILER or trailer[4:] != MAGIC:
        return None
    length = struct.unpack("<I", trailer[:4])[0]
    end = object_size - TRAILER
    start = end - length
    return (start, end) if start >= len(MAGIC) else None


def column_chunks(footer: bytes) -> list[ColumnChunk]:
    """Every column chunk the footer describes, in the order of the file."""
    metadata = _CompactReader(footer).struct()
    chunks: list[ColumnChunk] = []
    for group, row_group in enumerate(metadata.get(4) or []):
        for chunk in row_group.get(1) or []:
            meta = chunk.get(3)
            if meta is None:  # encrypted column metadata: the footer does not say where it is
                continue
            start = meta[9]
            dictionary = meta.get(11)
            if dictionary is not None and 0 < dictionary < start:
                start = dictionary
            path = ".".join(part.decode("utf-8", "replace") for part in meta.get(3) or [])
            chunks.append(ColumnChunk(group, path, start, start + meta[7]))
    chunks.sort(key=lambda c: c.start)
    return chunks


def layout_in_tail(start: int, tail: bytes, object_size: int) -> list[ColumnChunk] | None:
    """The column chunks, read from ``tail`` (the file's bytes from ``start`` to its end) if it holds the whole footer.

    None when the footer begins before ``start``; ``FooterError`` when the
    bytes are not a parquet file's end or do not parse.
    """
    if start + len(tail) != object_size or len(tail) < TRAILER:
        raise FooterError(f"{len(tail)} bytes from {start} are not the end of an object of {object_size}")
    span = footer_span(tail[-TRAILER:], object_size)
    if span is None:
        raise FooterError("the object does not end in a parquet footer")
    if span[0] < start:
        return None
    return column_chunks(tail[span[0] - start : span[1] - start])


# -- the Thrift compact protocol, as much as a footer needs ---------------------------------------

_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


class _CompactReader:
    """Decodes compact-protocol values: structs as ``{field id: value}``, lists as lists, binaries as bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def struct(self) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        field_id = 0
        while True:
            header = self._byte()
            kind = header & 0x0F
            if kind == _STOP:
                return fields
            delta = header >> 4
            field_id = field_id + delta if delta else self._zigzag(self._varint())
            fields[field_id] = self._value(kind)

    def _value(self, kind: int) -> Any:
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind == _BYTE:
            return self._byte()
        if kind in (_I16, _I32, _I64):
            return self._zigzag(self._varint())
        if kind == _DOUBLE:
            return struct.unpack("<d", self._take(8))[0]
        if kind == _BINARY:
            return bytes(self._take(self._varint()))
        if kind in (_LIST, _SET):
            return list(self._elements())
        if kind == _MAP:
            size = self._varint()
            if not size:
                return {}
            kinds = self._byte()
            return {self._value(kinds >> 4): self._value(kinds & 0x0F) for _ in range(size)}
        if kind == _STRUCT:
            return self.struct()
        raise FooterError(f"unknown Thrift compact type {kind} at byte {self._at} of the footer")

    def _elements(self) -> Iterator[Any]:
        header = self._byte()
        size = header >> 4
        if size == 15:
            size = self._varint()
        kind = header & 0x0F
        for _ in range(size):
            # booleans in a list are one byte each, 1 for true
            yield self._byte() == 1 if kind in (_TRUE, _FALSE) else self._value(kind)

    def _byte(self) -> int:
        if self._at >= len(self._data):
            raise FooterError("the footer ends in the middle of a value")
        value = self._data[self._at]
        self._at += 1
        return value

    def _take(self, count: int) -> memoryview:
        if self._at + count > len(self._data):
            raise FooterError("the footer ends in the middle of a value")
        piece = self._data[self._at : self._at + count]
        self._at += count
        return piece

    def _varint(self) -> int:
        value = shift = 0
        while True:
            byte = self._byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    @staticmethod
    def _zigzag(value: int) -> int:
        return (value >> 1) ^ -(value & 1)
