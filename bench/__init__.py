"""Benchmarks: every figure measured next to a baseline in the same run (see docs/performance.md)."""
