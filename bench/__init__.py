"""Benchmarks: load generators that print figures (see docs/performance.md)."""
