"""Random call sequences, and the check that a reader answers them exactly as ``io.BytesIO`` does."""

from __future__ import annotations

import array
import io
import itertools
from typing import Any

import numpy
import pytest
from hypothesis import strategies as st

MAX_OBJECT = 300

object_bytes = st.one_of(
    st.binary(max_size=MAX_OBJECT),
    st.text(alphabet="ab\n", max_size=MAX_OBJECT).map(str.encode),  # lines, for readline
)

_size = st.integers(min_value=-2, max_value=MAX_OBJECT + 10)

operation = st.one_of(
    st.tuples(st.just("read"), st.one_of(st.none(), _size)),
    st.tuples(st.just("read1"), _size),
    st.tuples(st.just("readinto"), st.integers(min_value=0, max_value=MAX_OBJECT + 10)),
    st.tuples(
        st.just("seek"), st.integers(min_value=-MAX_OBJECT - 10, max_value=MAX_OBJECT + 10), st.sampled_from([0, 1, 2])
    ),
    st.tuples(st.just("tell")),
    st.tuples(st.just("readline"), st.one_of(st.none(), st.integers(min_value=-1, max_value=40))),
    st.tuples(st.just("readlines")),
    st.tuples(st.just("next_lines"), st.integers(min_value=1, max_value=3)),
    st.tuples(st.just("readinto_as"), st.sampled_from(["memoryview", "numpy", "array"]), st.integers(0, 40)),
    st.tuples(st.just("index_like"), st.integers(min_value=0, max_value=MAX_OBJECT + 10), st.integers(-1, 40)),
)

operations = st.lists(operation, max_size=30)


def _target(kind: str, length: int) -> Any:
    """A writable buffer of ``length`` bytes of another type than bytearray."""
    if kind == "memoryview":
        return memoryview(bytearray(b"\xee" * length))
    if kind == "numpy":
        return numpy.full(length, 0xEE, dtype=numpy.uint8)
    return array.array("B", b"\xee" * length)


def assert_behaves_like_bytesio(reader: Any, data: bytes, ops: list[tuple[Any, ...]]) -> None:
    """Apply ``ops`` to ``reader`` and to ``io.BytesIO(data)``; every result and position must agree.

    The one intended difference: a seek whose target is negative raises
    ``ValueError`` on the reader for every ``whence`` (``BytesIO`` clamps
    relative ones to 0), and leaves the position where it was.
    """
    model = io.BytesIO(data)
    for step, op in enumerate(ops):
        kind, *args = op
        where = f"step {step} {op} at position {model.tell()}"
        if kind == "seek":
            offset, whence = args
            base = {0: 0, 1: model.tell(), 2: len(data)}[whence]
            if base + offset < 0:
                with pytest.raises(ValueError):
                    reader.seek(offset, whence)
            else:
                assert reader.seek(offset, whence) == model.seek(offset, whence), where
        elif kind == "readinto":
            (length,) = args
            ours, theirs = bytearray(b"\xee" * length), bytearray(b"\xee" * length)
            assert reader.readinto(ours) == model.readinto(theirs), where
            assert ours == theirs, where
        elif kind == "readinto_as":
            target_kind, length = args
            ours_target, theirs_target = _target(target_kind, length), _target(target_kind, length)
            assert reader.readinto(ours_target) == model.readinto(theirs_target), where
            assert bytes(memoryview(ours_target).cast("B")) == bytes(memoryview(theirs_target).cast("B")), where
        elif kind == "next_lines":
            (count,) = args
            assert list(itertools.islice(reader, count)) == list(itertools.islice(model, count)), where
        elif kind == "index_like":
            # numpy integers (anything with __index__) work as offsets and sizes
            offset, size = args
            assert reader.seek(numpy.int64(offset)) == model.seek(numpy.int64(offset)), where
            assert reader.read(numpy.int32(size)) == model.read(numpy.int32(size)), where
        else:
            assert getattr(reader, kind)(*args) == getattr(model, kind)(*args), where
        assert reader.tell() == model.tell(), where
