"""Where the numbers came from: the machine, the versions, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "fsspec_s3reader",
    "s3fs",
    "fsspec",
    "aiobotocore",
    "botocore",
    "torch",
    "pandas",
    "pyarrow",
    "numpy",
    "moto",
    "s3torchconnector",
    "boto3",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not installed"


def _commit() -> str:
    """The commit of the checkout the measured ``fsspec_s3reader`` came from, ``+changes`` if the package differs."""
    import fsspec_s3reader

    root = Path(fsspec_s3reader.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        package = Path(fsspec_s3reader.__file__).resolve().parent
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", package], cwd=root, check=False).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +changes" if dirty else "")


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def describe_machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(_memory_gib() or 0, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "node": _node_version(),
        "commit": _commit(),
        "packages": {package: _version(package) for package in PACKAGES},
    }
