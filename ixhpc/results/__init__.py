"""Run results: one HDF5 file per run point, merged tables, InferenceX exports, reports.

Heavy libraries (h5py, pandas, matplotlib) are imported inside functions so importing this
package stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

    from ixhpc.results.store import Requests


def write_point(path: str | os.PathLike[str], bench_result: dict[str, Any], metadata: dict[str, Any]) -> str:
    """Write one run-point HDF5 file from an ixhpc.bench result and the point's metadata."""
    from ixhpc.results import ingest

    return ingest.write_point(path, bench_result, metadata)


def load(path: str | os.PathLike[str]) -> pandas.DataFrame:
    """The table of a merged file, or the one-row table of a single run-point file."""
    from ixhpc.results import table

    return table.load(path)


def requests(path: str | os.PathLike[str], result_id: str | None = None) -> Requests:
    """Per-request data of one point: of a merged file (``result_id``, or a unique prefix of
    it, says which point) or of a run-point file. ``.frame()`` gives a DataFrame, ``.gaps(i)``
    request i's inter-token gaps."""
    from ixhpc.results import table

    return table.requests(path, result_id)
