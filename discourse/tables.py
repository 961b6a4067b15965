"""Reading and writing tables, always atomically (temporary file, then rename)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd

from .errors import DiscourseError

TABLE_SUFFIXES = (".csv", ".parquet", ".xlsx")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    If the body raises (or the process dies), ``path`` is untouched and the
    temporary file is removed, so no half-written output is ever left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
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


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` as UTF-8 exactly (no newline translation), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)


def _table_for_text(df: pd.DataFrame) -> pd.DataFrame:
    """Lists become `;`-joined strings so CSV/XLSX stay readable and stable."""
    out = df.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (list, tuple))).any():
            out[col] = out[col].map(lambda v: ";".join(v) if isinstance(v, (list, tuple)) else v)
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
            _table_for_text(df).to_excel(tmp, index=False, engine="openpyxl")


def read_yaml(path: str | os.PathLike, what: str = "file"):
    """Parse a YAML file; errors name the file and, for bad YAML, the line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DiscourseError(f"{what} not found", path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DiscourseError(f"bad YAML at {where}{problem}", path) from None
    except UnicodeDecodeError:
        raise DiscourseError("not UTF-8 text", path) from None


def csv_separator(path: str | os.PathLike) -> str:
    """``,`` unless the header line has no comma but a semicolon or a tab, as some spreadsheets save CSV."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        header = fh.readline()
    if "," not in header:
        for sep in (";", "\t"):
            if sep in header:
                return sep
    return ","


def read_table(path: str | os.PathLike, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV (comma, semicolon or tab separated), Parquet or XLSX table; check that ``required`` columns exist."""
    path = Path(path)
    if not path.is_file():
        raise DiscourseError("file not found", path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, sep=csv_separator(path), dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".xlsx":
            df = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
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
        raise DiscourseError(f"cannot read the table ({type(exc).__name__}: {exc})", path) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DiscourseError(
            f"missing column(s) {', '.join(missing)}; found: {', '.join(map(str, df.columns)) or 'none'}",
            path,
        )
    return df


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
