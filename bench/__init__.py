"""Benchmarks: our server side by side with Turing's, and the batch engines.

Run ``make bench`` (full) or ``make bench-smoke``; see ``python -m bench.run --help``.
"""
