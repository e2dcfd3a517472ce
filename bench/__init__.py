"""Benchmarks: ``python -m bench.<name>``; they report figures, they do not pass or fail."""
