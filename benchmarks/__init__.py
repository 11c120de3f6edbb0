"""Benchmarks: each module measures jobwarden beside its reference baseline."""
