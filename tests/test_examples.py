"""The scripts in examples/ run as a user runs them: a fresh process, the embedded S3 server, exit status 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=240, cwd=EXAMPLES.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_dcp_example_plans_then_loads_only_the_model_bytes() -> None:
    done = run_example("dcp_partial_load.py")
    assert "saved model + optimizer to s3://" in done.stdout
    assert "keys matching 'model.*': 8, read as 8 items" in done.stdout
    assert "model loaded correctly" in done.stdout
    summary = re.search(
        r"INFO fsspec_s3reader\.dcp: loaded \S+: 4 files, (\d+) GETs, (.+) fetched for (.+) needed", done.stderr
    )
    assert summary, done.stderr
    assert summary[2] == summary[3]  # max_gap_size=0: exactly the planned bytes
    assert "Traceback" not in done.stderr


def test_the_pandas_example_reads_two_columns_correctly_with_every_strategy() -> None:
    done = run_example("pandas_parquet.py")
    rows = [line for line in done.stdout.splitlines() if "fetched" in line]
    assert len(rows) == 4
    assert all(row.endswith("correct") for row in rows)
    assert "Traceback" not in done.stderr
