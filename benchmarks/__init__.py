"""Benchmark suite for rudp against kernel TCP, aioquic and raw UDP.

Run ``python -m benchmarks --help``; see ``benchmarks/README.md``.
"""
