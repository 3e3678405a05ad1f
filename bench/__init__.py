"""Benchmark of the relay against a direct connection and nginx on one fast upstream.

Run it with `scripts/bench` (or `.venv/bin/python -m bench --help`); see bench/README.md.
"""
