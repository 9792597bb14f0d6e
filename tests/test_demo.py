"""The README's first command: the demo runs end to end on the embedded server and every result is correct."""

from __future__ import annotations

import pytest

from fsspec_s3reader.__main__ import main


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_runs_every_strategy_and_reports_correct_results(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--size-mib", "2"]) == 0
    table = capsys.readouterr().out
    for strategy in ("sequential", "range_based", "dcp_optimized"):
        assert strategy in table
    assert "parquet" in table and "DCP" in table
    assert " NO" not in table
