"""Benchmarks: our reader strategies beside s3fs, torch, s3torchconnector, pyarrow and obstore, and two floors.

Run ``python -m benchmarks.run`` (``--quick`` for a smoke run); the page lands in
``docs/benchmarks.md`` with its plot, the raw numbers in ``benchmarks/results/``.
"""
