"""Benchmarks: the eval/benchmarks/ registry, loading a benchmark (local copy or Hub), rows to problems."""
