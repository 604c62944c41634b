"""Benchmark suite of the messaging gateway: `bash bench/run.sh` (see bench/README.md)."""
