"""Loaded only by the benchmark's moto server process: make a ranged GET cost O(range), not O(object).

moto answers every GET by reading the whole object out of its spooled temporary
file (``FakeKey.value``) and only then slicing out the requested range, so on a
256 MiB object a 4 KiB ranged GET costs ~0.25 s of server CPU. Real S3 charges
no such penalty, and it would swamp every client-side difference the benchmark
is meant to show (the more requests a strategy sends, the more it pays). Here
``FakeKey.value`` keeps the bytes it read once, until the object is written
again; every byte served is unchanged.
"""

from __future__ import annotations

from typing import Any

_CACHE_ATTRIBUTE = "_benchmark_cached_value"


def _install() -> None:
    try:
        from moto.s3 import models
    except ImportError:  # not a moto process after all: nothing to patch
        return
    key_class: Any = models.FakeKey
    if getattr(key_class, "benchmark_patched", False):
        return
    original: property = key_class.value

    def cached_value(self: Any) -> bytes:
        cached: bytes | None = self.__dict__.get(_CACHE_ATTRIBUTE)
        if cached is None:
            cached = original.fget(self) if original.fget is not None else b""
            self.__dict__[_CACHE_ATTRIBUTE] = cached
        return cached

    def set_value(self: Any, new_value: bytes) -> None:
        self.__dict__.pop(_CACHE_ATTRIBUTE, None)
        if original.fset is not None:
            original.fset(self, new_value)

    key_class.value = property(cached_value, set_value)
    key_class.benchmark_patched = True


_install()
