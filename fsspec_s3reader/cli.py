"""The command line: ``python -m fsspec_s3reader demo | cat | stat | plan``.

Results go to stdout, errors to stderr as one line naming what was wrong and
what to do. Exit status: 0 done, 1 S3 refused or has no such thing, 2 the
command line itself is wrong.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError

from .arguments import ByteRange, CommandFailed, UsageError, parse_checkpoint_uri, parse_object_uri, parse_size
from .filesystem import S3ReaderFileSystem
from .plan import DEFAULT_MAX_GAP_SIZE, ItemRange, PlannedLoad, range_groups
from .units import MIB, format_bytes
from .uris import without_scheme

if TYPE_CHECKING:
    from torch.distributed.checkpoint.metadata import Metadata

PROG = "python -m fsspec_s3reader"

DESCRIPTION = """Read S3 objects and plan DCP checkpoint loads.

Results go to stdout; an error is one line on stderr. Exit status: 0 done,
1 S3 refused or has no such thing, 2 the command line is wrong. Credentials
come from the usual AWS variables or profile (or FSSPEC_S3READER_KEY and
FSSPEC_S3READER_SECRET); --endpoint URL (or FSSPEC_S3READER_ENDPOINT_URL)
picks an S3-compatible endpoint."""

CAT_BLOCK = 64 * MIB
"""How much ``cat`` reads at a time: long enough to be fetched as concurrent parts, short enough to bound memory."""


def _filesystem(endpoint: str | None) -> S3ReaderFileSystem:
    options: dict[str, Any] = {} if endpoint is None else {"endpoint_url": endpoint}
    return S3ReaderFileSystem(skip_instance_cache=True, **options)


# -- cat -------------------------------------------------------------------------------


def run_cat(args: argparse.Namespace) -> int:
    bucket, key = parse_object_uri(args.uri)
    uri = f"s3://{bucket}/{key}"
    wanted = ByteRange.parse(args.range) if args.range is not None else None
    fs = _filesystem(args.endpoint)
    # buffer_size=0: every read is one exact ranged GET (split into concurrent parts), nothing kept after it.
    with fs.open(f"{bucket}/{key}", "rb", reader="range_based", buffer_size=0) as f:
        start, end = wanted.resolve(f.size, uri) if wanted is not None else (0, f.size)
        f.seek(start)
        out = sys.stdout.buffer
        while start < end:
            block = f.read(min(CAT_BLOCK, end - start))
            out.write(block)
            start += len(block)
        out.flush()
    return 0


# -- stat ------------------------------------------------------------------------------


def run_stat(args: argparse.Namespace) -> int:
    bucket, key = parse_object_uri(args.uri)
    uri = f"s3://{bucket}/{key}"
    info = _filesystem(args.endpoint).info(f"{bucket}/{key}")
    if info.get("type") != "file":
        raise CommandFailed(f"{uri} is a prefix with objects under it, not an object; list it or name an object")
    modified = info.get("LastModified")
    fields = {
        "uri": uri,
        "size": int(info["size"]),
        "etag": info.get("ETag"),
        "version_id": info.get("VersionId"),
        "last_modified": modified.isoformat() if isinstance(modified, datetime.datetime) else modified,
    }
    if args.json:
        sys.stdout.write(json.dumps(fields) + "\n")
        return 0
    shown = {**fields, "size": f"{fields['size']} ({format_bytes(fields['size'])})"}
    sys.stdout.write("".join(f"{name:<14}{'-' if value is None else value}\n" for name, value in shown.items()))
    return 0


# -- plan ------------------------------------------------------------------------------


def run_plan(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {} if args.endpoint is None else {"endpoint_url": args.endpoint}
    sys.stdout.write(describe_load_plan(args.checkpoint, args.keys, args.max_gap_size, **options))
    return 0


def describe_load_plan(
    checkpoint: str,
    keys: Sequence[str] | None = None,
    max_gap_size: float = DEFAULT_MAX_GAP_SIZE,
    **storage_options: Any,
) -> str:
    """What ``plan`` prints: per data file, the ranges a load of ``keys`` needs and the groups it would fetch.

    ``keys`` are ``fnmatch`` globs over the checkpoint's dotted keys
    (``"model.*"``); ``None`` means every key. Reads ``.metadata`` only.
    Raises :class:`UsageError` for a location that is not an S3 prefix or
    patterns that match no key, and ``FileNotFoundError`` when no checkpoint
    is stored there.
    """
    checkpoint = parse_checkpoint_uri(checkpoint)
    try:
        from .dcp import S3StorageReader, local_load_plan, matching_keys
    except ImportError as exc:
        raise CommandFailed(
            "plan needs PyTorch: pip install torch (the CPU wheel will do), then pip install 'fsspec_s3reader[dcp]'"
        ) from exc
    # What a load does: the storage reader reads .metadata, torch's default
    # planner plans the keys, and the plan is read into ranges and groups by
    # the same functions a load uses, so plan cannot drift from a load.
    metadata = S3StorageReader(checkpoint, **storage_options).read_metadata()
    patterns = list(keys or ["*"])
    matched = matching_keys(metadata, patterns)
    if not matched:
        sample = ", ".join(sorted(metadata.state_dict_metadata)[:5])
        raise UsageError(
            f"no key of {checkpoint} matches {' or '.join(repr(p) for p in patterns)}; "
            f"keys look like: {sample} (patterns are globs over the dotted keys, e.g. 'model.*')"
        )
    planned = PlannedLoad.of(local_load_plan(metadata, matched), metadata.storage_data, checkpoint)
    return _format_plan(planned, metadata, patterns, max_gap_size)


def _format_plan(planned: PlannedLoad, metadata: Metadata, patterns: Sequence[str], max_gap_size: float) -> str:
    stored = metadata.storage_data
    all_files = {info.relative_path for info in stored.values()}
    items = planned.plan.items
    lines = [
        f"checkpoint {planned.checkpoint}: {len(metadata.state_dict_metadata)} keys, "
        f"{format_bytes(sum(info.length for info in stored.values()))} in {len(all_files)} data files",
        f"keys matching {' or '.join(repr(p) for p in patterns)}: "
        f"{len({item.storage_index.fqn for item in items})}, read as {len(items)} items",
        f"max_gap_size: {'inf' if math.isinf(max_gap_size) else format_bytes(max_gap_size)}",
        "",
    ]
    total_needed = total_fetched = total_groups = 0
    for file in sorted(planned.files, key=lambda f: f.uri):
        groups = range_groups(file.ranges, max_gap_size)
        needed = sum(item.end - item.start for group in groups for item in group.items)
        fetched = sum(group.end - group.start for group in groups)
        lines.append(
            f"{file.relative_path}: {format_bytes(needed)} needed, "
            f"{format_bytes(fetched)} fetched in {_count(len(groups), 'range group')}"
        )
        for planned_range in file.ranges:
            lines.append(f"  needed  {_span(planned_range)}  {', '.join(file.keys[planned_range])}")
        for group in groups:
            lines.append(f"  group   {_span(group)}  {_count(len(group.items), 'item')}")
        total_needed += needed
        total_fetched += fetched
        total_groups += len(groups)
    ratio = f" ({total_fetched / total_needed:.2f}x)" if total_needed else ""
    lines += [
        "",
        f"total: {len(planned.files)} of {len(all_files)} data files, {format_bytes(total_needed)} needed, "
        f"{format_bytes(total_fetched)} fetched{ratio} in {_count(total_groups, 'range group')} "
        "(one GET stream each, split into parts when longer than part_size), plus .metadata",
    ]
    return "\n".join(lines) + "\n"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _span(span: ItemRange | Any) -> str:
    text = f"[{span.start}, {span.end})"
    return f"{text:<26}{format_bytes(span.end - span.start):>10}"


# -- demo ------------------------------------------------------------------------------


def run_demo_command(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return 0 if run_demo(args.endpoint, args.bucket, args.size_mib) else 1


# -- the parser and main ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        sub.add_argument(
            "--endpoint",
            metavar="URL",
            help="S3-compatible endpoint (default: AWS, or the embedded moto server for demo); "
            "credentials come from the usual AWS environment variables or profile",
        )
        return sub

    demo = command(
        "demo", run_demo_command, "read sample objects, a parquet file and a DCP checkpoint with every reader strategy"
    )
    demo.add_argument(
        "--bucket", default="fsspec-s3reader-demo", help="bucket for the sample objects (created if absent)"
    )
    demo.add_argument("--size-mib", type=int, default=32, help="size of the sample object in MiB (default 32)")

    cat = command("cat", run_cat, "write an object's bytes (or a range of them) to stdout")
    cat.add_argument("uri", metavar="URI", help="s3://bucket/key or s3reader://bucket/key")
    cat.add_argument(
        "--range",
        metavar="FIRST-LAST",
        help="bytes FIRST to LAST, both included as in HTTP (0-99 is 100 bytes); FIRST- to the end; -N the last N",
    )

    stat = command("stat", run_stat, "print an object's size, ETag, version and last-modified time")
    stat.add_argument("uri", metavar="URI", help="s3://bucket/key or s3reader://bucket/key")
    stat.add_argument("--json", action="store_true", help="print one JSON object instead of aligned lines")

    plan = command(
        "plan",
        run_plan,
        "print which files and byte ranges a (partial) DCP load would fetch and how they coalesce; loads nothing",
    )
    plan.add_argument("checkpoint", metavar="CHECKPOINT_URI", help="s3://bucket/prefix of the checkpoint")
    plan.add_argument(
        "--keys",
        metavar="PATTERN",
        action="append",
        help="load only keys matching this glob over the dotted keys, e.g. 'model.*' (repeat for more; default all)",
    )
    plan.add_argument(
        "--max-gap-size",
        metavar="SIZE",
        type=parse_size,
        default=DEFAULT_MAX_GAP_SIZE,
        help=(
            "dcp_optimized's max_gap_size: bytes, 64KiB, 32MiB, or inf "
            f"(default {DEFAULT_MAX_GAP_SIZE}: what a request costs in bytes on S3)"
        ),
    )
    return parser


def _fail(args: argparse.Namespace, message: str) -> None:
    sys.stderr.write(f"{PROG} {args.command}: error: {message}\n")


def _describe(exc: BaseException, args: argparse.Namespace) -> str:
    if isinstance(exc, CommandFailed):
        return str(exc)
    target = getattr(args, "uri", None) or getattr(args, "checkpoint", None) or ""
    if isinstance(exc, FileNotFoundError):
        # s3fs raises FileNotFoundError("bucket/key"): the path alone says nothing new
        detail = exc.strerror or (str(exc) if str(exc) != without_scheme(target) else "")
        return f"{target}: not found{f' ({detail})' if detail else ''}; check the bucket, the key and --endpoint"
    if isinstance(exc, PermissionError):
        return f"{target}: access denied ({exc}); check the credentials (AWS_* variables or profile)"
    return f"{target}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        status: int = args.run(args)
    except UsageError as exc:
        _fail(args, str(exc))
        return 2
    except BrokenPipeError:
        # The reader of our stdout went away (``| head``): not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CommandFailed, OSError, BotoCoreError) as exc:
        _fail(args, _describe(exc, args))
        return 1
    return status
