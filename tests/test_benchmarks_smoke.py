"""The benchmark suite runs end to end on a tiny workload: servers, the link, workers, counts, floors, page and plot.

Skipped where the suite's own needs are missing (the ``bench`` extra, Node.js, or
s3rver not yet in its npm cache folder, which would take the internet to fill).
Speed is never asserted here: only that a run completes and checks its data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

for module in ("s3torchconnector", "boto3", "matplotlib", "torch", "pandas", "pyarrow", "obstore"):
    pytest.importorskip(module)
servers = pytest.importorskip("benchmarks.servers")

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="the benchmark's timing server, s3rver, needs Node.js"),
    pytest.mark.skipif(
        not servers.s3rver_script(install=False).exists(),
        reason="s3rver is not in its npm cache folder yet (python -m benchmarks.run --quick installs it)",
    ),
]


def test_a_tiny_run_writes_results_a_page_and_a_plot_with_server_counts_that_clients_agree_with(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.md"
    command = [sys.executable, "-m", "benchmarks.run", "--quick", "--workloads", "small_objects", "parquet"]
    command += ["--small-objects", "8", "--small-objects-link", "4", "--parquet-rows", "20000", "--warmup", "0"]
    command += ["--results-dir", str(tmp_path), "--markdown", str(page)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-3000:]

    (results_file,) = tmp_path.glob("*-quick.json")
    results = json.loads(results_file.read_text())
    parquet = next(w for w in results["workloads"] if w["workload"] == "parquet")
    assert parquet["timing_endpoints"] == ["s3rver", "link"]
    for summary in (s for w in results["workloads"] for s in w["summary"]):
        if summary["kind"] != "memory-floor":  # the memory floor reads from memory: no request at all
            assert summary["get_requests"] > 0, summary["key"]
        assert summary["counts_agree"] in (True, None), summary["key"]
    assert {s["kind"] for s in parquet["summary"]} == {"ours", "peer", "memory-floor", "network-floor"}
    if sys.platform == "linux":  # the server's CPU during each loopback run, from /proc (maybe in 10 ms ticks)
        server_cpu = [s["server_cpu_seconds"] for s in parquet["summary"] if s["kind"] != "memory-floor"]
        assert all(seconds is not None and seconds >= 0 for seconds in server_cpu) and sum(server_cpu) > 0
    text = page.read_text()
    assert "| contender |" in text and "vs floor @link" in text
    assert page.with_suffix(".png").stat().st_size > 0
