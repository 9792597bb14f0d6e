"""Command line: ``python -m fsspec_s3reader demo [--endpoint URL]``."""

from __future__ import annotations

import argparse
import logging
import sys

from .demo import run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fsspec_s3reader", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="read sample objects, a parquet file and a DCP checkpoint with every reader strategy"
    )
    demo.add_argument(
        "--endpoint", metavar="URL", help="an S3-compatible endpoint to use instead of the embedded moto server"
    )
    demo.add_argument(
        "--bucket", default="fsspec-s3reader-demo", help="bucket for the sample objects (created if absent)"
    )
    demo.add_argument("--size-mib", type=int, default=32, help="size of the sample object in MiB (default 32)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        return 0 if run_demo(args.endpoint, args.bucket, args.size_mib) else 1
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
