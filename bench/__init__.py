"""Benchmarks of the hot paths (`make bench`); they report numbers and assert nothing."""
