"""``python -m ixhpc.evals``: the eval client's wheelhouse and offline install (ixhpc.evals.client)."""

from ixhpc.evals.client import main

if __name__ == "__main__":
    raise SystemExit(main())
