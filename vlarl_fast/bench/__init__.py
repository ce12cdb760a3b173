"""Benchmark support code shared by benchmarks/*.py."""
