"""The process helpers the tests share with the benchmarks: they live in bench/procs.py (the
benchmarks import nothing from tests/)."""

from bench.procs import PrivateRedis, free_port, wait_for

__all__ = ["PrivateRedis", "free_port", "wait_for"]
