"""Benchmarks: our reader strategies side by side with plain s3fs and torch's FsspecReader.

Run ``python -m benchmarks.run`` (``--quick`` for a smoke run); the results
table lands in ``docs/benchmarks.md``, the raw numbers in ``benchmarks/results/``.
"""
