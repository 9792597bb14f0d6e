"""The package's layers, proven by importing each one alone in a fresh interpreter.

Dependencies point one way: DCP -> filesystem -> strategies -> transport ->
seam. A module that imports upward, or a strategy that reaches for s3fs,
botocore or torch, shows up here as a module loaded where it must not be.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

THIRD_PARTY_NETWORK = ("s3fs", "botocore", "aiobotocore", "aiohttp")

LAYERS: dict[str, tuple[str, ...]] = {
    # the seam: the standard library only
    "fsspec_s3reader.protocol": ("fsspec_s3reader.readers", *THIRD_PARTY_NETWORK, "torch", "fsspec"),
    "fsspec_s3reader.chunks": ("fsspec_s3reader.readers", *THIRD_PARTY_NETWORK, "torch", "fsspec"),
    "fsspec_s3reader.testing": ("fsspec_s3reader.readers", *THIRD_PARTY_NETWORK, "torch", "fsspec"),
    "fsspec_s3reader.forking": ("fsspec_s3reader.readers", *THIRD_PARTY_NETWORK, "torch", "fsspec"),
    "fsspec_s3reader.recent_answers": ("fsspec_s3reader.readers", *THIRD_PARTY_NETWORK, "torch", "fsspec"),
    "fsspec_s3reader.footers_ahead": ("fsspec_s3reader.readers", *THIRD_PARTY_NETWORK, "torch", "fsspec"),
    # the plan: pure, reads torch's plan by its attributes
    "fsspec_s3reader.plan": (
        "fsspec_s3reader.filesystem",
        "fsspec_s3reader.transport",
        "fsspec_s3reader.readers",
        *THIRD_PARTY_NETWORK,
        "torch",
    ),
    # the strategies: the seam and the plan's ranges, nothing of S3 or torch
    "fsspec_s3reader.readers": (
        "fsspec_s3reader.filesystem",
        "fsspec_s3reader.transport",
        "fsspec_s3reader.constructor",
        *THIRD_PARTY_NETWORK,
        "torch",
    ),
    "fsspec_s3reader.constructor": (
        "fsspec_s3reader.filesystem",
        "fsspec_s3reader.transport",
        *THIRD_PARTY_NETWORK,
        "torch",
    ),
    # the transport: S3 through its declared interface, no reader, no filesystem
    "fsspec_s3reader.transport": (
        "fsspec_s3reader.readers",
        "fsspec_s3reader.constructor",
        "fsspec_s3reader.filesystem",
        "torch",
    ),
    # the filesystem: everything below, never torch
    "fsspec_s3reader.filesystem": ("fsspec_s3reader.dcp", "torch"),
}


def _modules_loaded_by(module: str) -> set[str]:
    code = f"import importlib, json, sys; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_each_layer_imports_nothing_above_it(module: str) -> None:
    loaded = _modules_loaded_by(module)
    offending = sorted(
        name for name in loaded for forbidden in LAYERS[module] if name == forbidden or name.startswith(forbidden + ".")
    )
    assert not offending, f"importing {module} also loads {offending}"


def test_the_package_face_loads_nothing_until_asked() -> None:
    loaded = _modules_loaded_by("fsspec_s3reader")
    assert not {name for name in loaded if name.startswith("fsspec_s3reader.")}
    assert not {"s3fs", "torch"} & loaded
