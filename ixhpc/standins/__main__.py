"""``python -m ixhpc.standins PROGRAM ARG...``: run one engine stand-in (see ixhpc.standins)."""

from __future__ import annotations

from ixhpc.standins.main import main

if __name__ == "__main__":
    raise SystemExit(main())
