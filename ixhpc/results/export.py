"""Exports of a merged table: InferenceX ``agg_bmk.json`` rows and CSV."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, cast

from ixhpc import atomic
from ixhpc.bench import validity
from ixhpc.results import metrics

if TYPE_CHECKING:
    import pandas


def records(df: pandas.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values, absent ones as None."""
    # cast: pandas has no type information here (ignore_missing_imports), so this is Any
    return cast("list[dict[str, Any]]", df.astype(object).where(df.notna(), None).to_dict("records"))


def ok_rows(df: pandas.DataFrame, include_invalid: bool = False) -> pandas.DataFrame:
    """Points whose benchmark succeeded and that the validity gate did not find invalid
    (unless ``include_invalid``): failed and invalid points stay in the table, not in
    comparisons. A point judged before the gate (no verdict: unknown) is kept."""
    if "failure" in df:
        df = df[df["failure"].isna()]
    if not include_invalid and "validity" in df:
        df = df[(df["validity"] != validity.INVALID).fillna(True).astype(bool)]
    return df


def invalid_rows(df: pandas.DataFrame) -> pandas.DataFrame:
    """Points the validity gate judged invalid."""
    if "validity" not in df:
        return df.iloc[0:0]
    return df[(df["validity"] == validity.INVALID).fillna(False).astype(bool)]


def agg_rows(df: pandas.DataFrame, include_invalid: bool = False) -> list[dict[str, Any]]:
    return [metrics.agg_row(row) for row in records(ok_rows(df, include_invalid))]


def write_agg_json(df: pandas.DataFrame, path: str | os.PathLike[str], include_invalid: bool = False) -> int:
    rows = agg_rows(df, include_invalid)
    # allow_nan=False: InferenceX's consumers include strict JSON parsers
    atomic.write_text(path, json.dumps(rows, indent=2, allow_nan=False) + "\n")
    return len(rows)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_csv(df: pandas.DataFrame, path: str | os.PathLike[str]) -> int:
    """The table as CSV; text cells a spreadsheet would run as a formula are defused."""
    atomic.write_text(path, defused(df).to_csv(index=False))
    return len(df)


def defused(df: pandas.DataFrame) -> pandas.DataFrame:
    """``df`` with every text cell starting like a formula (=, +, -, @, tab, CR) prefixed by
    ``'`` (OWASP's advice). Only text columns: numbers, negative ones too, stay numbers."""
    import pandas as pd

    out = df.copy(deep=False)
    for name in df.columns:
        column = df[name]
        if column.dtype.kind in "OSU" or isinstance(column.dtype, pd.StringDtype):  # text, never numbers
            text = column.astype("string")
            risky = text.str.startswith(_FORMULA_START).fillna(False).astype(bool)
            if risky.any():
                out[name] = text.mask(risky, "'" + text)
    out.columns = [_defuse(str(c)) for c in df.columns]
    return out


def _defuse(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text
