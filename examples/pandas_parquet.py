"""Read 2 of 16 columns of a parquet file on S3 with pandas, and see how many bytes each reader strategy fetched.

    python examples/pandas_parquet.py                  # an embedded S3 server (moto), no account needed
    python examples/pandas_parquet.py --endpoint URL   # any S3-compatible endpoint; AWS credentials as usual

The strategy travels in ``storage_options``, as any fsspec option does; a
small ``buffer_size`` makes every column-chunk read one exact ranged GET.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.local_server import s3_storage_options
from fsspec_s3reader.units import format_bytes

CHOICES: dict[str, dict[str, Any]] = {
    "adaptive (the default)": {},
    "sequential": {"reader": "sequential"},
    "range_based (8 MiB buffer)": {"reader": "range_based"},
    "range_based, buffer_size=64 KiB": {"reader": "range_based", "buffer_size": 64 * 1024},
}


def run(storage_options: dict[str, Any], bucket: str) -> bool:
    fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    url = f"s3reader://{bucket}/examples/table-{uuid.uuid4().hex[:8]}.parquet"

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{i}": rng.random(50_000) for i in range(16)})
    frame.to_parquet(url, row_group_size=12_500, storage_options=storage_options)
    print(f"wrote {format_bytes(fs.size(url))} to {url}")

    correct = True
    for name, choice in CHOICES.items():
        options = {**storage_options, **choice}
        # pandas builds its filesystem through fsspec's instance cache: this is
        # the very instance it reads through, so its counters see the read.
        reading = fsspec.filesystem("s3reader", **options)
        before = reading.stats
        columns = pd.read_parquet(url, columns=["c3", "c11"], storage_options=options)
        spent = reading.stats - before
        same = columns.equals(frame[["c3", "c11"]])
        correct = correct and same
        print(
            f"{name:<32} {spent.get_requests:>3} GETs {format_bytes(spent.bytes_fetched):>10} fetched"
            f"  {'correct' if same else 'WRONG'}"
        )
    return correct


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", metavar="URL", help="S3-compatible endpoint (default: an embedded moto server)")
    parser.add_argument("--bucket", default="fsspec-s3reader-examples", help="bucket to use (created if absent)")
    args = parser.parse_args(argv)
    with s3_storage_options(args.endpoint) as storage_options:
        return 0 if run(storage_options, args.bucket) else 1


if __name__ == "__main__":
    sys.exit(main())
