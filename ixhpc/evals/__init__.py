"""Accuracy evals in the benchmark's allocation: lm-eval against the point's engine, scores
and a verdict against thresholds stored with the point (docs/evals.md).

``plan``: the job's eval steps; ``problems``/``tasks``: the local arithmetic task;
``thresholds``; ``results``: lm-eval's output -> the point's eval document. Imports nothing
here: the simulated engine imports ``problems`` (standard library only) inside the run's bundle.
"""
