"""What a DCP load tells its user: the progress bar of bytes loaded, and the one-line summary at INFO."""

from __future__ import annotations

import io
import logging
import re
import uuid
from typing import Any

import pytest
import torch.distributed.checkpoint as dcp
from dcp_states import assert_same_state, blank_like, training_state
from torch.distributed.checkpoint.api import CheckpointException

from fsspec_s3reader import S3ReaderFileSystem, S3StorageReader, S3StorageWriter
from fsspec_s3reader.load_report import wants_progress_bar

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

SUMMARY = re.compile(
    r"loaded (?P<uri>\S+): (?P<files>\d+) files, (?P<gets>\d+) GETs, "
    r"(?P<fetched>[\d.]+ \w+) fetched for (?P<needed>[\d.]+ \w+) needed \((?P<ratio>[\d.]+)x\), [\d.]+ s"
)


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self._terminal = terminal

    def isatty(self) -> bool:
        return self._terminal


@pytest.fixture(scope="module")
def saved(s3_server: Any) -> tuple[str, dict[str, Any]]:
    options = s3_server.storage_options
    bucket = f"report-{uuid.uuid4().hex[:12]}"
    S3ReaderFileSystem(skip_instance_cache=True, **options).mkdir(bucket)
    state = training_state()
    uri = f"s3://{bucket}/run"
    dcp.save(state, storage_writer=S3StorageWriter(uri, thread_count=2, **options))
    return uri, state


def test_a_load_logs_one_summary_line_at_info_with_what_it_fetched_and_needed(
    saved: tuple[str, dict], storage_options: dict, caplog: pytest.LogCaptureFixture
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, max_gap_size=0, **storage_options)
    before = reader.filesystem.stats
    with caplog.at_level(logging.INFO, logger="fsspec_s3reader.dcp"):
        dcp.load(blank_like(state), storage_reader=reader)
    lines = [r.getMessage() for r in caplog.records if r.name == "fsspec_s3reader.dcp" and r.levelno == logging.INFO]
    assert len(lines) == 1
    match = SUMMARY.fullmatch(lines[0])
    assert match, lines[0]
    assert match["uri"] == uri
    assert int(match["files"]) == 2
    data_gets = (reader.filesystem.stats - before).get_requests  # .metadata came with the reader's check, before
    assert int(match["gets"]) == data_gets
    assert match["ratio"] == "1.00"  # max_gap_size=0 on a full load fetches exactly the planned bytes


def test_the_summary_counts_only_the_planned_bytes_of_a_partial_load(
    saved: tuple[str, dict], storage_options: dict, caplog: pytest.LogCaptureFixture
) -> None:
    uri, state = saved
    with caplog.at_level(logging.INFO, logger="fsspec_s3reader.dcp"):
        dcp.load({"model": blank_like(state["model"])}, storage_reader=S3StorageReader(uri, **storage_options))
        dcp.load(blank_like(state), storage_reader=S3StorageReader(uri, **storage_options))
    partial, full = (SUMMARY.fullmatch(r.getMessage()) for r in caplog.records if r.name == "fsspec_s3reader.dcp")
    assert partial and full
    assert partial["needed"] != full["needed"]


def test_no_summary_is_logged_when_the_load_fails(
    saved: tuple[str, dict], storage_options: dict, caplog: pytest.LogCaptureFixture
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, **storage_options)
    fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    data_file = next(p for p in fs.ls(uri, detail=False) if p.endswith(".distcp"))
    original = fs.cat_file(data_file)
    fs.pipe_file(data_file, original[:10])
    try:
        with caplog.at_level(logging.INFO, logger="fsspec_s3reader.dcp"), pytest.raises(CheckpointException):
            dcp.load(blank_like(state), storage_reader=reader)
    finally:
        fs.pipe_file(data_file, original)
    assert not [r for r in caplog.records if r.name == "fsspec_s3reader.dcp" and r.levelno == logging.INFO]


def test_progress_always_draws_a_bar_of_bytes_on_stderr(
    saved: tuple[str, dict], storage_options: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, state = saved
    target = blank_like(state)
    dcp.load(target, storage_reader=S3StorageReader(uri, progress="always", **storage_options))
    captured = capsys.readouterr()
    assert f"loading {uri}" in captured.err
    assert "100%" in captured.err
    assert captured.out == ""
    assert_same_state(target, state)


@pytest.mark.parametrize("atomic", [True, False])
def test_progress_true_draws_nothing_when_the_output_is_not_a_terminal(
    saved: tuple[str, dict], storage_options: dict, capsys: pytest.CaptureFixture[str], atomic: bool
) -> None:
    uri, state = saved
    target = blank_like(state)
    dcp.load(target, storage_reader=S3StorageReader(uri, atomic=atomic, progress=True, **storage_options))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert_same_state(target, state)


def test_progress_is_off_by_default(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, _ = saved
    assert S3StorageReader(uri, **storage_options)._progress is False


@pytest.mark.parametrize(
    ("progress", "rank", "stdout_tty", "stderr_tty", "drawn"),
    [
        (False, 0, True, True, False),
        (True, 0, True, True, True),
        (True, 0, False, True, False),
        (True, 0, True, False, False),
        (True, 1, True, True, False),
        ("always", 0, False, False, True),
        ("always", 1, True, True, False),
    ],
)
def test_the_bar_is_drawn_on_rank_0_only_and_with_true_only_on_a_terminal(
    progress: Any, rank: int, stdout_tty: bool, stderr_tty: bool, drawn: bool
) -> None:
    assert wants_progress_bar(progress, rank, _Stream(stdout_tty), _Stream(stderr_tty)) is drawn


@pytest.mark.parametrize("progress", ["yes", 1, None])
def test_a_progress_value_other_than_true_false_or_always_is_refused(
    saved: tuple[str, dict], storage_options: dict, progress: Any
) -> None:
    uri, _ = saved
    with pytest.raises(ValueError, match="progress must be True, False or 'always'"):
        S3StorageReader(uri, progress=progress, **storage_options)
