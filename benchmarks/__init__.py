"""Timing and memory harness: `python -m benchmarks` runs every benchmark."""
