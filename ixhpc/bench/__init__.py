"""The load generator (``python -m ixhpc.bench``), InferenceX ``benchmark_serving``-style.

It runs inside engine containers with the ixhpc source mounted, so it may import only the
standard library, numpy, ``ixhpc.atomic`` and ``ixhpc.errors`` (tests/test_bench.py enforces this); it runs on
uvloop where the container has it.
"""
