"""Benchmarks: our reader strategies side by side with s3fs, torch's FsspecReader, s3torchconnector and boto3.

Run ``python -m benchmarks.run`` (``--quick`` for a smoke run); the page lands in
``docs/benchmarks.md`` with its plot, the raw numbers in ``benchmarks/results/``.
"""
