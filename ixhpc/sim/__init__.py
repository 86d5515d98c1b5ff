"""A simulated LLM inference engine: real HTTP, timings from a documented roofline model.

Nothing here runs a model. It exists so that every other part of ixhpc (jobs, load
generator, results) can be exercised for real on machines without GPUs.
"""
