"""Reading and writing tables, always atomically (temporary file, then rename)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .errors import DiscourseError

TABLE_SUFFIXES = (".csv", ".parquet", ".xlsx")
_EXCEL_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters an XLSX cell cannot hold
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")  # characters that would break a one-line message


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    If the body raises (or the process dies), ``path`` is untouched and the
    temporary file is removed, so no half-written output is ever left. The file
    gets ``mode``, or the usual permissions (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask() if mode is None else mode)  # mkstemp makes 0600
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files left by a run that was killed (``.NAME.XXXX.tmp``); return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink()
    return len(stale)


def zip_bytes(members: list[tuple[str, bytes]], date_time: tuple = (1980, 1, 1, 0, 0, 0)) -> bytes:
    """A zip (docx, xlsx, qdpx) with fixed timestamps, permissions and order: same members, same bytes."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buf.getvalue()


def zip_members(path: str | os.PathLike) -> list[tuple[str, bytes]]:
    """(name, bytes) of every member of a zip, in order."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_text(text: str, path: str | os.PathLike, mode: int | None = None) -> None:
    """Write ``text`` as UTF-8 exactly (no newline translation), atomically (with ``mode``: see ``atomic_path``)."""
    with atomic_path(path, mode) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)


def _is_list(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _table_for_text(df: pd.DataFrame) -> pd.DataFrame:
    """Lists (Python or numpy, as Parquet gives them) become `;`-joined strings so CSV/XLSX stay readable and stable."""
    out = df.copy()
    for j in range(out.shape[1]):
        col = out.iloc[:, j]
        if col.map(_is_list).any():
            out.isetitem(j, col.map(lambda v: ";".join(map(str, v)) if _is_list(v) else v))
    return out


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table as CSV, Parquet or XLSX by the suffix of ``path``, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DiscourseError(
            f"unknown output type '{suffix}': use one of {', '.join(TABLE_SUFFIXES)}", path
        )
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            _table_for_text(df).to_csv(tmp, index=False, lineterminator="\n")
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            _write_sheets({"Sheet1": _table_for_text(df)}, tmp)


def excel_safe(v):
    """A value as an XLSX cell can hold it: control characters (a form feed from a PDF, say) become spaces."""
    return _EXCEL_ILLEGAL.sub(" ", v) if isinstance(v, str) else v


def text_not_formulas(ws) -> None:
    """Cells of an openpyxl sheet (below its header) that openpyxl took for formulas, because the text starts
    with ``=``, kept as the text they are."""
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if cell.data_type == "f":
                cell.data_type = "s"


def write_sheets(tables: dict[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """An XLSX with one sheet per table, atomically; sheet names made valid and unique (Excel: 31 characters)."""
    names = _sheet_names(list(tables))
    with atomic_path(path) as tmp:
        _write_sheets({n: _table_for_text(t) for n, t in zip(names, tables.values())}, tmp)


def _sheet_names(names: list[str]) -> list[str]:
    """Each name without the characters Excel refuses, cut to 31; ``(2)``, ``(3)``... where two would be the same."""
    used, out = set(), []
    for name in names:
        clean = re.sub(r"[\[\]:*?/\\]", "_", str(name)).strip("'")[:31] or "Sheet"
        candidate, k = clean, 2
        while candidate.lower() in used:
            candidate, k = f"{clean[:26]} ({k})", k + 1
        used.add(candidate.lower())
        out.append(candidate)
    return out


def _write_sheets(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Write the sheets with openpyxl: text cells as text (a leading ``=`` is never a formula), no control
    characters Excel refuses, and fixed dates and zip times, so the same tables give the same bytes."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, df in tables.items():
            df.map(excel_safe).to_excel(writer, sheet_name=name, index=False)
            text_not_formulas(writer.sheets[name])
    normalise_xlsx(path)


def normalise_xlsx(path: str | os.PathLike) -> None:
    """Fixed document dates (openpyxl stamps them on save) and zip times, so the same workbook gives the same bytes."""
    fixed = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*")
    members = [(n, fixed.sub(rb"\g<1>2000-01-01T00:00:00Z", b) if n == "docProps/core.xml" else b)
               for n, b in zip_members(path)]
    Path(path).write_bytes(zip_bytes(members))


def check_output_path(path: str | os.PathLike) -> None:
    """Fail before any work if ``path`` is not a table type we write or its folder cannot be written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DiscourseError(f"unknown output type '{suffix}': use one of {', '.join(TABLE_SUFFIXES)}", path)
    check_writable_folder(path.parent)


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Fail before any work if ``folder`` (or the nearest folder that exists above it) cannot be written."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise DiscourseError(f"'{existing}' is a file, not a folder", folder)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DiscourseError(f"cannot write in '{existing}' (permission denied)", folder)


def shown(value, limit: int | None = None) -> str:
    """``value`` as text fit for a one-line message: control characters escaped (a line break shows as ``\\n``),
    cut to ``limit`` characters with ``...``."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit].rstrip() + "..."
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _unique_key_loader():
    """A YAML SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last, silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                first: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        earlier = first.get(key)
                    except TypeError:  # an unhashable key: the base constructor says so
                        continue
                    if earlier is not None:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key '{shown(key)}' is given twice in one mapping (first at line {earlier}), "
                            "so one would be silently lost: merge them into one", key_node.start_mark)
                    first[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | os.PathLike, what: str = "file"):
    """Parse a YAML file; errors name the file and, for bad YAML, the line. A key given twice in one mapping
    is an error."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DiscourseError(f"{what} not found", path)
    try:
        return yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_unique_key_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DiscourseError(f"bad YAML at {where}{shown(problem)}", path) from None
    except UnicodeDecodeError:
        raise DiscourseError("not UTF-8 text", path) from None


def csv_separator(path: str | os.PathLike) -> str:
    """A CSV file's separator, from its header line (:func:`header_separator`)."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return header_separator(fh.readline())


def header_separator(header: str) -> str:
    """``,`` unless the header line has no comma but a semicolon or a tab, as some spreadsheets save CSV."""
    if "," not in header:
        for sep in (";", "\t"):
            if sep in header:
                return sep
    return ","


def _without_unnamed(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Drop columns with no name and nothing in them (trailing separators, as spreadsheets write them); refuse one
    with no name that holds values, which would otherwise become a column named ''."""
    from openpyxl.utils import get_column_letter

    keep = []
    for j, name in enumerate(df.columns):
        filled = [i for i, v in zip(df.index, df.iloc[:, j]) if not is_blank(v)]
        if str(name).strip():
            keep.append(j)
        elif filled:
            raise DiscourseError(f"column {j + 1} ({get_column_letter(j + 1)}) has no name in the header but holds "
                                 f"values (row {filled[0] + 2}): name it, or delete the column", path)
    return df.iloc[:, keep]


def read_table(path: str | os.PathLike, required: tuple[str, ...] = (), exact: bool = False, tidy: bool = False,
               known: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV (comma, semicolon or tab separated), Parquet or XLSX table; check that ``required`` columns exist.

    Column names are kept as written (a blank header stays blank); a name used twice is an error. A Parquet
    index with a name comes back as a column. ``exact`` keeps Parquet's own column types (Arrow-backed), so a
    table written back out has the same types: what ``discourse predict`` passes through.

    ``tidy`` is for the tool's own input tables (manifest, speaker table, hand-coded excerpts): spaces around
    column names are dropped, a name that differs from one of ``required`` or ``known`` only in case is an
    error, rows with every cell blank (blank lines, a spreadsheet's trailing ``,,`` rows) are dropped, and the
    index is kept so that ``index + 2`` is the row's number as a spreadsheet shows it (the header is row 1).
    """
    path = Path(path)
    if not path.is_file():
        raise DiscourseError("file not found", path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = _read_csv(path, keep_blank_lines=tidy)
        elif suffix == ".parquet":
            df = pd.read_parquet(path, **({"dtype_backend": "pyarrow"} if exact else {}))
            named = [n for n in df.index.names if n is not None]
            df = (df.reset_index(level=named) if named else df).reset_index(drop=True)
        elif suffix == ".xlsx":
            df = _read_xlsx(path, keep_row_numbers=tidy)
        else:
            raise DiscourseError(
                f"unknown table type '{suffix}': use .csv, .parquet or .xlsx", path
            )
    except DiscourseError:
        raise
    except pd.errors.EmptyDataError:
        raise DiscourseError("the table is empty", path) from None
    except UnicodeDecodeError:
        raise DiscourseError("not UTF-8 text: save it as UTF-8 (in Excel: Save As, 'CSV UTF-8') and try again", path) from None
    except Exception as exc:  # parser errors from pandas/pyarrow/openpyxl
        raise DiscourseError(f"cannot read the table ({type(exc).__name__}: {shown(str(exc).strip(), 300)})", path) from None
    if tidy:
        df.columns = [str(c).strip() for c in df.columns]
        df = _without_unnamed(df, path)
    names = [str(c) for c in df.columns]
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        shown_names = ", ".join(f"'{shown(c)}'" for c in twice)
        raise DiscourseError(f"column name(s) {shown_names} used more than once: give every column its own name", path)
    if tidy:
        _refuse_case_variants(names, (*required, *known), path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DiscourseError(
            f"missing column(s) {', '.join(missing)}; found: {', '.join(map(shown, df.columns)) or 'none'}",
            path,
        )
    return df[~blank_rows(df)] if tidy else df


def text_cells(column: pd.Series) -> pd.Series:
    """A column's cells as text with spaces trimmed; a missing cell (NaN, None, ``pd.NA``) is ``''``, never ``'nan'``."""
    values = column.astype(object)
    return values.where(values.notna(), "").astype(str).str.strip()


def _refuse_case_variants(names: list[str], meant: tuple[str, ...], path: Path) -> None:
    """A column named like one the tool reads but in other case (``Trust``, ``Doc_ID``) would be silently ignored."""
    by_lower = {m.lower(): m for m in meant}
    for name in names:
        m = by_lower.get(name.lower())
        if m is not None and name != m:
            raise DiscourseError(
                f"column '{shown(name)}' is not '{m}': column names are read exactly as written, so it would be "
                f"ignored; rename it '{m}'", path)


def is_blank(value) -> bool:
    """A cell with nothing in it: missing, only spaces, or an empty list."""
    if isinstance(value, str):
        return not value.strip()
    if _is_list(value):
        return len(value) == 0
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def blank_rows(df: pd.DataFrame) -> pd.Series:
    """True for each row whose every cell is blank."""
    if df.shape[1] == 0:
        return pd.Series(False, index=df.index)
    return pd.Series([all(map(is_blank, row)) for row in df.itertuples(index=False, name=None)], index=df.index,
                     dtype=bool)  # bool even with no rows, so that df[~mask] selects rows, not columns


def _read_xlsx(path: Path, keep_row_numbers: bool = False) -> pd.DataFrame:
    """The first sheet, all cells as text, names as in its first row (pandas would rename repeated ones).

    ``keep_row_numbers``: the header is the first row that is not blank, and the index is the sheet's row
    number minus 2 (``index + 2`` is the row as Excel shows it, blank rows counted)."""
    raw = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl", header=None)
    if keep_row_numbers and not raw.empty:
        filled = raw.index[~blank_rows(raw)]
        raw = raw.loc[filled[0]:] if len(filled) else raw.iloc[:0]
    if raw.empty:
        raise pd.errors.EmptyDataError("no rows")
    df = raw.iloc[1:]
    df = df.set_axis(df.index - 1) if keep_row_numbers else df.reset_index(drop=True)
    df.columns = [str(v) for v in raw.iloc[0]]
    return df


def _read_csv(path: Path, keep_blank_lines: bool = False) -> pd.DataFrame:
    """All cells as text, names as in the header line; rows may end in empty fields (a trailing separator), not in data.

    ``keep_blank_lines``: a blank line is a row of empty cells, so ``index + 2`` is the row's number as a
    spreadsheet shows it."""
    import csv
    import warnings

    sep = csv_separator(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False,
                         skip_blank_lines=not keep_blank_lines)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = csv.reader(fh, delimiter=sep)
        header = next(rows, [])
        if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
            for line, row in enumerate(rows, start=2):
                if any(cell.strip() for cell in row[len(header):]):
                    raise DiscourseError(
                        f"row {line} has {len(row)} fields but the header has {len(header)}: "
                        "a value with a separator in it needs quotes", path)
    if len(header) == df.shape[1]:
        df.columns = header  # pandas renames blank and repeated names ("Unnamed: 3", "note.1")
    return df


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
