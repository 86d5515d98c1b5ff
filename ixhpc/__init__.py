"""ixhpc: InferenceX-style LLM inference benchmarks on Slurm clusters."""

__version__ = "0.1.0"
