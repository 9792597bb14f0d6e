"""The body of one rank in the multi-process checkpoint tests (spawned, so importable without pytest)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

from fsspec_s3reader import S3ReaderConstructor, S3StorageReader, S3StorageWriter


def full_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "weight": torch.randn(64, 48),
        "bias": torch.randn(48, dtype=torch.float64),
        "embedding": torch.randn(128, 16),
        "counts": torch.arange(40, dtype=torch.int32).reshape(8, 5),
    }


def save_then_reshard_and_load(rank: int, world_size: int, init_file: str, uri: str, options: dict[str, Any]) -> dict:
    """Save with rows split across ranks; load with a different split; report what this rank fetched."""
    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        full = full_tensors()
        saved = {name: distribute_tensor(tensor, mesh, [Shard(0)]) for name, tensor in full.items()}
        dcp.save(saved, storage_writer=S3StorageWriter(uri, **options))
        dist.barrier()

        placements = {"weight": [Shard(1)], "bias": [Replicate()], "embedding": [Shard(0)], "counts": [Shard(1)]}
        target = {
            name: distribute_tensor(torch.zeros_like(tensor), mesh, placements[name]) for name, tensor in full.items()
        }
        reader = S3StorageReader(uri, S3ReaderConstructor.dcp_optimized(max_gap_size=0), **options)
        metadata_size = reader.filesystem.size(f"{uri}/.metadata")
        reader.filesystem.reset_stats()
        dcp.load(target, storage_reader=reader)
        stats = reader.filesystem.stats
        planned = reader.reader_constructor.item_ranges_by_file  # type: ignore[attr-defined]
        equal = {name: bool(torch.equal(target[name].full_tensor(), full[name])) for name in full}
        return {
            "rank": rank,
            "equal": equal,
            "bytes_fetched": stats.bytes_fetched,
            "planned_bytes": sum(r.end - r.start for ranges in planned.values() for r in ranges),
            "all_data_bytes": sum(info.length for info in reader.storage_data.values()),
            "metadata_size": metadata_size,
            "embedding_bytes_of_other_ranks": sum(
                info.length
                for index, info in reader.storage_data.items()
                if index.fqn == "embedding" and not info.relative_path.startswith(f"__{rank}_")
            ),
        }
    finally:
        dist.destroy_process_group()


def run_rank(rank: int, world_size: int, init_file: str, uri: str, options: dict[str, Any], results: Any) -> None:
    try:
        results.put(save_then_reshard_and_load(rank, world_size, init_file, uri, options))
    except BaseException as exc:  # report, so the parent fails with the reason instead of a timeout
        results.put({"rank": rank, "error": repr(exc)})
        raise
