"""Hand-coded excerpts (training and test data): a table with ``text`` and ``codes``.

``codes`` holds zero or more code ids separated by ``;`` (a list in Parquet).
Other columns (id, role, batch, coder, source, doc_id...) pass through.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import DiscourseError
from .tables import read_table

GROUP_COLUMNS = ("batch", "source", "doc_id")


def split_codes(value) -> list[str]:
    """``'a;b'`` or a list -> sorted unique list of code ids."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        items = value.replace(",", ";").split(";")
    else:
        items = list(value)
    return sorted({str(c).strip() for c in items if str(c).strip()})


def read_coded(path: str | os.PathLike, codes: list[str] | None = None) -> pd.DataFrame:
    """Read a coded table; ``codes`` becomes a list column. Checks text and code ids."""
    df = read_table(path, required=("text", "codes"))
    if df.empty:
        raise DiscourseError("has no rows: hand-coded excerpts are needed", path)
    df = df.copy()
    text = df["text"].astype("string").fillna("").str.strip()
    empty = text == ""
    if empty.any():
        rows = ", ".join(str(i + 2) for i in df.index[empty][:5])
        raise DiscourseError(f"{int(empty.sum())} row(s) have no text (rows {rows}); remove them or fill them in", path)
    df["text"] = df["text"].astype(str)
    df["codes"] = [split_codes(v) for v in df["codes"]]
    if codes is not None:
        known = set(codes)
        for i, cs in zip(df.index, df["codes"]):
            bad = [c for c in cs if c not in known]
            if bad:
                raise DiscourseError(
                    f"row {i + 2}: code(s) {', '.join(bad)} are not in the codebook (known: {', '.join(codes)})", path
                )
    return df


def cv_groups(df: pd.DataFrame) -> tuple[str | None, list | None]:
    """The column to group cross-validation by (batch, source or doc_id), and its values."""
    for col in GROUP_COLUMNS:
        if col in df.columns and df[col].nunique() >= 2:
            return col, df[col].astype(str).tolist()
    return None, None


def read_second_coding(path: str | os.PathLike, first: pd.DataFrame, codes: list[str],
                       first_path: str | os.PathLike = "the test table") -> pd.DataFrame:
    """A second coder's codes for excerpts of ``first``, matched by ``id``.

    Returns ``first``'s rows that the second coder coded (in ``first``'s order)
    with a ``second_codes`` list column. Every id must occur once in each table.
    """
    if "id" not in first.columns:
        raise DiscourseError("has no id column, so a second coding cannot be matched to it", first_path)
    second = read_table(path, required=("id", "codes"))
    if second.empty:
        raise DiscourseError("has no rows: a second coding needs at least one coded excerpt", path)
    ids = _unique_ids(second, path)
    first_ids = _unique_ids(first, first_path)
    unknown = sorted(set(ids) - set(first_ids))
    if unknown:
        raise DiscourseError(f"{len(unknown)} id(s) are not in {Path(first_path).name} (first: {unknown[0]})", path)
    known = set(codes)
    coded = {}
    for i, (key, value) in enumerate(zip(ids, second["codes"])):
        cs = split_codes(value)
        bad = [c for c in cs if c not in known]
        if bad:
            raise DiscourseError(f"row {i + 2}: code(s) {', '.join(bad)} are not in the codebook (known: {', '.join(codes)})", path)
        coded[key] = cs
    keep = first_ids.isin(coded)
    out = first[keep.to_numpy()].copy()
    out["second_codes"] = [coded[k] for k in first_ids[keep]]
    return out


def _unique_ids(df: pd.DataFrame, path) -> pd.Series:
    """A table's ``id`` column as stripped strings; an id that occurs twice is an error naming the file."""
    ids = df["id"].astype(str).str.strip()
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DiscourseError(f"id {dup.iloc[0]} occurs more than once", path)
    return ids
