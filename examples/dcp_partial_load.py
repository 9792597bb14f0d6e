"""Save a PyTorch Distributed Checkpoint to S3, then load only the model from it, fetching only the model's bytes.

    python examples/dcp_partial_load.py                  # an embedded S3 server (moto), no account needed
    python examples/dcp_partial_load.py --endpoint URL   # any S3-compatible endpoint; AWS credentials as usual

It prints what a partial load would fetch (the ``plan`` command), then the
load's own one-line summary, and checks that every loaded tensor is right.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
import warnings
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from fsspec_s3reader import S3ReaderFileSystem, S3StorageReader, S3StorageWriter
from fsspec_s3reader.cli import describe_load_plan
from fsspec_s3reader.local_server import s3_storage_options


def train_a_little() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(512, 512) for _ in range(4)))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(8, 512)).sum().backward()
    optimizer.step()
    return model, optimizer


def run(storage_options: dict[str, Any], bucket: str) -> bool:
    fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    checkpoint = f"s3://{bucket}/examples/ckpt-{uuid.uuid4().hex[:8]}"

    model, optimizer = train_a_little()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    dcp.save(state, storage_writer=S3StorageWriter(checkpoint, thread_count=4, **storage_options))
    print(f"saved model + optimizer to {checkpoint}")

    # What would a model-only load fetch? The same as `python -m fsspec_s3reader plan CHECKPOINT --keys 'model.*'`.
    print(describe_load_plan(checkpoint, ["model.*"], max_gap_size=0, **storage_options))

    # The load itself: only the "model" keys, so only their bytes are fetched.
    # max_gap_size=0 fetches no bytes between the planned ranges.
    fresh = torch.nn.Sequential(*(torch.nn.Linear(512, 512) for _ in range(4)))
    target = {"model": fresh.state_dict()}
    reader = S3StorageReader(checkpoint, max_gap_size=0, progress=True, **storage_options)
    dcp.load(target, storage_reader=reader)  # logs "loaded ...: N files, N GETs, ... fetched for ... needed"
    fresh.load_state_dict(target["model"])

    correct = all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
    print(f"model loaded {'correctly' if correct else 'WRONGLY'}; the reader's counters: {reader.filesystem.stats}")
    return correct


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", metavar="URL", help="S3-compatible endpoint (default: an embedded moto server)")
    parser.add_argument("--bucket", default="fsspec-s3reader-examples", help="bucket to use (created if absent)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fsspec_s3reader.dcp").setLevel(logging.INFO)  # the one-line summary of each load
    warnings.filterwarnings("ignore", "torch.distributed is disabled")  # one process, no process group: intended
    with s3_storage_options(args.endpoint) as storage_options:
        return 0 if run(storage_options, args.bucket) else 1


if __name__ == "__main__":
    sys.exit(main())
