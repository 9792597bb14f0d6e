"""Several threads at once, and DataLoader workers forked after the parent used the filesystem."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fsspec_s3reader import S3ReaderFileSystem

STRATEGIES = ["sequential", "range_based", "dcp_optimized"]  # dcp_optimized without a plan reads range-based
OBJECTS = {f"object-{index}.bin": random.Random(index).randbytes(50_000 + 977 * index) for index in range(4)}


def read_back(fs: S3ReaderFileSystem, path: str, strategy: str) -> bytes:
    """Open, read a middle slice, then the whole object from the start: more than one request per file."""
    with fs.open(path, "rb", reader=strategy) as reader:
        reader.seek(1000)
        middle = reader.read(5000)
        reader.seek(0)
        whole = reader.read()
    assert middle == whole[1000:6000]
    return whole


@pytest.fixture
def stored(fs: S3ReaderFileSystem, bucket: str) -> dict[str, bytes]:
    for name, data in OBJECTS.items():
        fs.pipe_file(f"{bucket}/{name}", data)
    return {f"{bucket}/{name}": data for name, data in OBJECTS.items()}


@pytest.mark.filterwarnings("ignore:no load-plan ranges:UserWarning")
def test_many_threads_open_and_read_through_one_filesystem_at_once(
    storage_options: dict, stored: dict[str, bytes]
) -> None:
    fs = S3ReaderFileSystem(part_size=16 * 1024, skip_instance_cache=True, **storage_options)
    jobs = [(path, strategy) for path in stored for strategy in STRATEGIES]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda job: read_back(fs, *job), jobs))
    for (path, _), data in zip(jobs, results, strict=True):
        assert data == stored[path]


class ObjectsDataset(Dataset[torch.Tensor]):
    """Reads one object per item through a filesystem built in the parent process."""

    def __init__(self, fs: S3ReaderFileSystem, paths: list[str]) -> None:
        self.fs = fs
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        data = read_back(self.fs, self.paths[index], STRATEGIES[index % 2])
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def test_forked_dataloader_workers_read_through_a_filesystem_the_parent_used(
    storage_options: dict, stored: dict[str, bytes]
) -> None:
    fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    paths = sorted(stored)
    assert read_back(fs, paths[0], "sequential") == stored[paths[0]]  # the parent's client and loop are in use
    loader = DataLoader(
        ObjectsDataset(fs, paths), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60
    )
    for path, tensor in zip(paths, loader, strict=True):
        assert tensor.numpy().tobytes() == stored[path]
    assert read_back(fs, paths[-1], "range_based") == stored[paths[-1]]  # and the parent still reads
