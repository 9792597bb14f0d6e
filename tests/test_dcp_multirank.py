"""Two ranks (gloo on CPU, spawned processes): a sharded save, and a load with a different sharding."""

from __future__ import annotations

import multiprocessing
import queue
import uuid
from pathlib import Path
from typing import Any

import pytest
from dcp_workers import run_rank

from fsspec_s3reader import S3ReaderFileSystem

WORLD_SIZE = 2


@pytest.fixture(scope="module")
def rank_results(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    options = s3_server.storage_options
    bucket = f"ranks-{uuid.uuid4().hex[:12]}"
    S3ReaderFileSystem(skip_instance_cache=True, **options).mkdir(bucket)
    init_file = str(Path(tmp_path_factory.mktemp("gloo")) / "init")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ranks = [
        context.Process(target=run_rank, args=(rank, WORLD_SIZE, init_file, f"s3://{bucket}/sharded", options, results))
        for rank in range(WORLD_SIZE)
    ]
    for process in ranks:
        process.start()
    collected = []
    try:
        for _ in ranks:
            collected.append(results.get(timeout=240))
    except queue.Empty:
        pytest.fail("a rank did not report within 240 s")
    finally:
        for process in ranks:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    errors = [r for r in collected if "error" in r]
    assert not errors, errors
    return sorted(collected, key=lambda r: r["rank"])


def test_every_rank_loads_the_resharded_tensors_bit_for_bit(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert all(result["equal"].values()), result


def test_each_rank_fetches_only_its_planned_ranges(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert result["bytes_fetched"] <= result["planned_bytes"] + result["metadata_size"], result
        assert result["planned_bytes"] < result["all_data_bytes"], result


def test_a_shard_kept_in_place_is_not_fetched_by_the_other_rank(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert result["embedding_bytes_of_other_ranks"] > 0
        assert result["bytes_fetched"] <= (
            result["all_data_bytes"] - result["embedding_bytes_of_other_ranks"] + result["metadata_size"]
        ), result
