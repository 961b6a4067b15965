"""Hand-coded excerpts (training and test data): a table with ``text`` and ``codes``.

``codes`` holds zero or more code ids separated by ``;`` (a list in Parquet).
Other columns (id, role, batch, coder, source, doc_id...) pass through.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .tables import is_blank, read_table, shown, text_cells

GROUP_COLUMNS = ("batch", "source", "doc_id")
NAMED_COLUMNS = ("id", *GROUP_COLUMNS)  # columns read by name besides text and codes: ``Id`` would be missed
_CODE_SEPARATORS = re.compile(r"[;,\r\n\u2028\u2029]")  # a line break: Excel's Alt+Enter inside a cell


def split_codes(value) -> list[str]:
    """``'a;b'`` (or ``a,b``, or one code a line) or a list -> sorted unique list of code ids, in lower case
    (codebook ids always are)."""
    if isinstance(value, str):
        items = _CODE_SEPARATORS.split(value)
    elif isinstance(value, (list, tuple, np.ndarray)):  # Parquet lists come back as arrays
        items = list(value)
    elif is_blank(value):  # None, NaN, pd.NA
        return []
    else:
        items = [value]
    return sorted({str(c).strip().lower() for c in items if not is_blank(c) and str(c).strip()})


def read_coded(path: str | os.PathLike, codes: list[str] | None = None) -> pd.DataFrame:
    """Read a coded table; ``codes`` becomes a list column. Checks text and code ids.

    Blank rows are dropped, and the index is kept so that ``index + 2`` is the row's number in a spreadsheet.
    Duplicate texts coded differently go into ``attrs["warnings"]``.
    """
    df = read_table(path, required=("text", "codes"), tidy=True, known=NAMED_COLUMNS)
    if df.empty:
        raise DiscourseError("has no rows: hand-coded excerpts are needed", path)
    df = df.copy()
    text = df["text"].astype("string").fillna("").str.strip()
    empty = text == ""
    if empty.any():
        rows = ", ".join(str(i + 2) for i in df.index[empty][:5])
        raise DiscourseError(f"{int(empty.sum())} row(s) have no text (rows {rows}); remove them or fill them in", path)
    if codes is not None:
        _refuse_spilled_codes(df, codes, path)
    df["text"] = df["text"].astype(str)
    df["codes"] = [split_codes(v) for v in df["codes"]]
    if codes is not None:
        _refuse_unknown_codes(df.index, df["codes"], codes, path)
    conflicts = _conflicting_duplicates(df)
    if conflicts:
        df.attrs["warnings"] = [f"{path}: {conflicts}"]
    return df


def _refuse_unknown_codes(index, values, codes: list[str], path) -> None:
    known = set(codes)
    for i, cs in zip(index, values):
        bad = [c for c in cs if c not in known]
        if bad:
            raise DiscourseError(
                f"row {i + 2}: code(s) {', '.join(map(shown, bad))} are not in the codebook (known: {', '.join(codes)})",
                path)


def _refuse_spilled_codes(df: pd.DataFrame, codes: list[str], path) -> None:
    """``1,text,empowered,consumer`` under ``id,text,codes,coder``: unquoted, the second code fell into the next
    column. Refused when that column holds only code ids on a coded row (and never on an uncoded one, as a
    column of codes in its own right would)."""
    if Path(path).suffix.lower() != ".csv":
        return
    cols = list(df.columns)
    after = cols[cols.index("codes") + 1:cols.index("codes") + 2]
    if not after or after[0] == "text":
        return
    col, known = after[0], set(codes)
    only_codes = df[col].map(lambda v: bool(cs := split_codes(v)) and set(cs) <= known)
    coded = ~df["codes"].map(is_blank)
    if only_codes.any() and not (only_codes & ~coded).any() and (only_codes & coded).any():
        i = (only_codes & coded).idxmax()
        raise DiscourseError(
            f"row {i + 2}: column '{shown(col)}' holds '{shown(df.at[i, col])}', which looks like codes that spilled "
            "out of the codes column: put several codes in quotes (\"a,b\") or separate them with ';'", path)


def _conflicting_duplicates(df: pd.DataFrame, show: int = 3) -> str:
    """A warning for texts that occur more than once with different codes, or ''."""
    first: dict[str, tuple[int, list[str]]] = {}
    pairs = []
    for i, text, cs in zip(df.index, df["text"], df["codes"]):
        j, earlier = first.setdefault(_same_text(text), (i, cs))
        if earlier != cs:
            pairs.append(f"{j + 2} and {i + 2}")
    if not pairs:
        return ""
    more = f" and {len(pairs) - show} more" if len(pairs) > show else ""
    return (f"{len(pairs)} excerpt(s) repeat an earlier text with other codes (rows {'; '.join(pairs[:show])}{more}): "
            "both codings are learnt from; check which is right")


def _same_text(text) -> str:
    """A text as compared across tables: whitespace collapsed, Unicode composed."""
    return unicodedata.normalize("NFC", " ".join(str(text).split()))


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
    with a ``second_codes`` list column. Every id must occur once in each table;
    if the second table has a ``text`` column, each text must be its id's text in ``first``.
    """
    if "id" not in first.columns:
        raise DiscourseError("has no id column, so a second coding cannot be matched to it", first_path)
    second = read_table(path, required=("id", "codes"), tidy=True, known=("text",))
    if second.empty:
        raise DiscourseError("has no rows: a second coding needs at least one coded excerpt", path)
    ids = _unique_ids(second, path)
    first_ids = _unique_ids(first, first_path)
    unknown = sorted(set(ids) - set(first_ids))
    if unknown:
        raise DiscourseError(f"{len(unknown)} id(s) are not in {Path(first_path).name} (first: {shown(unknown[0])})"
                             + _near_ids(unknown, first_ids.tolist()), path)
    _refuse_spilled_codes(second, codes, path)
    coded = {key: split_codes(value) for key, value in zip(ids, second["codes"])}
    _refuse_unknown_codes(second.index, list(coded.values()), codes, path)
    if "text" in second.columns:
        _refuse_other_texts(second, ids, dict(zip(first_ids, first["text"])), Path(first_path).name, path)
    keep = first_ids.isin(coded)
    out = first[keep.to_numpy()].copy()
    out["second_codes"] = [coded[k] for k in first_ids[keep]]
    return out


def _refuse_other_texts(second: pd.DataFrame, ids: pd.Series, first_text: dict, first_name: str, path) -> None:
    """Matched by id, the two tables must be about the same excerpts: a blank text is not checked."""
    for i, key, text in zip(second.index, ids, second["text"]):
        if is_blank(text) or _same_text(text) == _same_text(first_text[key]):
            continue
        raise DiscourseError(
            f"row {i + 2}: the text of id {shown(key)} is not its text in {first_name} ('{shown(_same_text(text), 60)}' "
            f"here, '{shown(_same_text(first_text[key]), 60)}' there): the tables are matched by id, so an id must "
            "name the same excerpt in both", path)


def _near_ids(unknown: list[str], first_ids: list[str]) -> str:
    """A hint when ids differ only as a spreadsheet changes them (``001`` -> ``1``, ``1`` -> ``1.0``), or ''."""
    def canon(s: str) -> str:
        return re.sub(r"\.0+$", "", s).lstrip("0") or "0"

    by_canon = {canon(f): f for f in first_ids}
    near = [(u, by_canon[canon(u)]) for u in unknown if canon(u) in by_canon]
    if not near:
        return ""
    u, f = near[0]
    return (f"; {len(near)} of them match once leading zeros or a trailing '.0' are ignored ('{shown(u)}' and "
            f"'{shown(f)}'): a spreadsheet may have turned the ids into numbers; keep them as text in both tables")


def _unique_ids(df: pd.DataFrame, path) -> pd.Series:
    """A table's ``id`` column as stripped strings; a blank id or one that occurs twice is an error naming the file."""
    ids = text_cells(df["id"])
    blank = ids == ""
    if blank.any():
        raise DiscourseError(f"row {ids.index[blank][0] + 2} has no id", path)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DiscourseError(f"id {shown(dup.iloc[0])} occurs more than once", path)
    return ids
