"""The study manifest: which file is which document, its trust and metadata; who is who.

``manifest.csv`` has one row per document: ``doc_id``, ``file`` (relative to the
manifest), ``trust`` and any other document columns. The speaker table
(``speakers.csv`` beside the manifest unless named) maps ``doc_id, speaker`` to
``role``; ``doc_id`` ``*`` applies to every document.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path

import pandas as pd

from .errors import DiscourseError
from .tables import header_separator, read_table, shown, text_cells
from .transcripts import FORMATS, is_interviewer_label

INTERVIEWER = "interviewer"
UNKNOWN = "unknown"
RESERVED = {"path", "turn", "speaker", "role", "text", "start", "end", "t_start", "t_end", "excerpt_id", "codes",
            "confidence"}
NOT_TRANSCRIPTS = ("~$", "._")  # Word's lock files and macOS's resource forks, found in shared folders
# Documents a transcript may be saved as that the tool cannot read: named in a warning when found in a folder.
UNREAD_TYPES = (".doc", ".docm", ".dot", ".dotm", ".dotx", ".odt", ".ott", ".pages", ".pdf", ".rtf", ".wpd", ".wps",
                ".htm", ".html")
_NOT_IN_FILE_NAMES = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')


_WINDOWS_RESERVED = re.compile(r"(?:con|prn|aux|nul|com[0-9]|lpt[0-9])", re.IGNORECASE)  # even with an extension


def check_doc_id(doc_id: str, path: str | os.PathLike, where: str = "", fix: str = "choose another") -> None:
    """Refuse a doc_id that cannot name the document's output files (``texts/<doc_id>.txt``, the cache).

    ``where`` starts the message (``row 3: ``); ``fix`` says what to do. Call it on every doc_id a transcript
    brings itself (a CSV transcript's ``doc_id`` column) as well as on the manifest's.
    """
    if not doc_id.strip():
        why = "is blank"
    elif _NOT_IN_FILE_NAMES.search(doc_id):
        why = 'holds one of / \\ : * ? " < > | or a control character'
    elif doc_id.startswith("."):
        why = "starts with '.'"
    elif doc_id.endswith((".", " ")):
        why = "ends with '.' or a space, which Windows drops from file names"
    elif _WINDOWS_RESERVED.fullmatch(doc_id.split(".")[0]):
        why = "is a name Windows reserves for devices"
    else:
        return
    raise DiscourseError(f"{where}doc_id '{shown(doc_id)}' cannot name the document's output files "
                         f"(texts/<doc_id>.txt): it {why}; {fix}", path)


def case_clash(doc_id: str, seen: dict[str, tuple[str, str]], where: str, path: str | os.PathLike) -> None:
    """Record ``doc_id`` in ``seen`` (lower case -> (id, where)); refuse one that differs from an earlier id only in
    case, as their output files would be one file on Windows and macOS. Exact repeats are the caller's to refuse."""
    earlier, at = seen.setdefault(doc_id.lower(), (doc_id, where))
    if earlier != doc_id:
        raise DiscourseError(
            f"doc_ids '{shown(earlier)}' ({at}) and '{shown(doc_id)}' ({where}) differ only in case, so their output "
            "files would be one file on Windows and macOS: give them ids that differ in more than case", path)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read the manifest; add ``path`` (absolute file path). Checks ids and files; errors name the row."""
    path = Path(path)
    df = read_table(path, required=("doc_id", "file"), tidy=True, known=("trust",)).copy()
    for col in ("doc_id", "file"):
        df[col] = text_cells(df[col])
        _refuse_blank(df, col, path)
    _check_manifest_ids(df, path)
    reserved = sorted(c for c in map(str, df.columns) if c.lower() in RESERVED or c.startswith(("p_", "n_")))
    if reserved:
        raise DiscourseError(
            f"column(s) {', '.join(reserved)} would clash with the tool's own columns (speaker, role and p_<code> "
            "come from the transcripts, the speaker table and the model): rename them, e.g. doc_role", path)
    if "trust" not in df.columns:
        df["trust"] = UNKNOWN
    meta = [c for c in df.columns if c not in ("doc_id", "file")]
    df[meta] = df[meta].apply(text_cells)  # "North " and "North" are one group
    df[meta] = df[meta].replace({"": UNKNOWN, "nan": UNKNOWN})  # a blank cell groups as "unknown", as trust always did
    base = Path(os.path.abspath(path)).parent  # beside the manifest as given, even if it is a link to elsewhere
    df["path"] = [_locate(base, f) for f in df["file"]]
    for doc_id, file, p in zip(df["doc_id"], df["file"], df["path"]):
        if not Path(p).is_file():
            raise DiscourseError(f"doc '{doc_id}' names file '{shown(file)}', which does not exist", path)
    _refuse_files_read_twice(df, path)
    return df.sort_values("doc_id", kind="stable").reset_index(drop=True)


def _refuse_blank(df: pd.DataFrame, col: str, path: Path, hint: str = "", name_doc: bool = True) -> None:
    """A row with something in it but no ``col`` (a row of nothing at all was dropped when the table was read).

    ``name_doc``: say the row's doc_id; ``hint`` ends the message.
    """
    blank = df[col] == ""
    if blank.any():
        i = df.index[blank][0]
        of = f" (doc '{shown(df.at[i, 'doc_id'])}')" if name_doc and col != "doc_id" and "doc_id" in df.columns else ""
        raise DiscourseError(f"row {i + 2}{of} has no {col}{hint}", path)


def _check_manifest_ids(df: pd.DataFrame, path: Path) -> None:
    """Every doc_id names a file, once, and differs from the others in more than case."""
    for i, doc_id in zip(df.index, df["doc_id"]):
        check_doc_id(doc_id, path, f"row {i + 2}: ")
    dup = df["doc_id"][df["doc_id"].duplicated()]
    if len(dup):
        raise DiscourseError(f"duplicate doc_id '{shown(dup.iloc[0])}': every document needs its own id", path)
    seen: dict[str, tuple[str, str]] = {}
    for i, doc_id in zip(df.index, df["doc_id"]):
        case_clash(doc_id, seen, f"row {i + 2}", path)


def _locate(base: Path, file: str) -> str:
    """The absolute path of ``file`` (relative to ``base``); a Windows path (``t\\P01.txt``) works anywhere."""
    p = base / file
    if not p.exists() and "\\" in file:
        alt = base / file.replace("\\", "/")
        if alt.exists():
            p = alt
    return str(p.resolve())


def _file_key(path: str | os.PathLike):
    """What makes two paths one file: device and inode (links, case-insensitive disks), else the resolved path."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and st.st_ino:
        return st.st_dev, st.st_ino
    return os.path.normcase(str(Path(path).resolve()))


def _holds_doc_ids(path: str) -> bool:
    """A CSV transcript with a doc_id column holds several documents: the manifest lists it once per document."""
    if not path.lower().endswith(".csv"):
        return False
    return "doc_id" in _csv_header(Path(path))


def _csv_header(path: Path) -> set[str]:
    """A CSV transcript's column names in lower case (as transcripts read them); empty if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return set()
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            text = head[len(bom):].decode(encoding, errors="ignore")
            break
    else:
        text = head.decode("utf-8-sig", errors="replace")
    first = next((line for line in text.splitlines() if line.strip()), "")
    return {c.strip().strip('"').strip().lower() for c in first.split(header_separator(first))}


def _refuse_files_read_twice(df: pd.DataFrame, path: Path) -> None:
    """One transcript under two doc_ids would be read, and counted, twice."""
    seen: dict = {}
    for i, doc_id, file, p in zip(df.index, df["doc_id"], df["file"], df["path"]):
        j, other = seen.setdefault(_file_key(p), (i, doc_id))
        if j != i and not _holds_doc_ids(p):
            raise DiscourseError(
                f"docs '{shown(other)}' (row {j + 2}) and '{shown(doc_id)}' (row {i + 2}) name the same file, "
                f"'{shown(file)}', which would be read twice: list each transcript once", path)


def read_speakers(path: str | os.PathLike | None, optional: bool = False) -> pd.DataFrame:
    """Read the speaker table (doc_id, speaker, role). A missing file is an error, or an empty table if ``optional``.

    Roles are compared in lower case (``Interviewer`` is the interviewer; ``Staff`` and ``staff`` one role), and
    speaker labels are matched to the transcripts in lower case, so a label may be listed once per document.
    """
    if path is None or (optional and not Path(path).exists()):
        return pd.DataFrame(columns=["doc_id", "speaker", "role"])
    df = read_table(path, required=("doc_id", "speaker", "role"), tidy=True).copy()
    for col in ("doc_id", "speaker", "role"):
        df[col] = text_cells(df[col])
    # every row names a document (or ``*``) and a speaker; a blank role counts as not named (import-qdpx writes them)
    _refuse_blank(df, "doc_id", path, hint=" (use * for a speaker of every document)")
    _refuse_blank(df, "speaker", path, name_doc=False)
    df["speaker"] = df["speaker"].str.replace(r"\s*:$", "", regex=True)  # "Interviewer:" as the transcript shows it
    df["speaker"] = df["speaker"].str.split().str.join(" ")  # spaces as transcripts' labels are read
    df["role"] = df["role"].str.lower()
    dup = df[df.assign(key=df["speaker"].str.lower()).duplicated(["doc_id", "key"])]
    if len(dup):
        r = dup.iloc[0]
        raise DiscourseError(f"speaker '{shown(r.speaker)}' of doc '{shown(r.doc_id)}' is listed twice", path)
    out = df.reset_index(drop=True)
    out.attrs["path"] = str(path)
    return out


def default_speakers_path(manifest_path: str | os.PathLike) -> Path:
    """``speakers.csv`` beside the manifest as given (beside a link, not its target)."""
    return Path(os.path.abspath(manifest_path)).parent / "speakers.csv"


def assign_roles(turns: pd.DataFrame, speakers: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Add a ``role`` column; return the turns and the speakers nobody named (doc_id/speaker).

    Lookup order: the doc's own row, then a ``*`` row, then interviewer labels
    (Interviewer, INT, I, Facilitator...) as ``interviewer``, else ``unknown``.
    """
    exact = {(d, s.lower()): r for d, s, r in zip(speakers["doc_id"], speakers["speaker"], speakers["role"])}
    roles, unknown = [], set()
    for doc_id, speaker in zip(turns["doc_id"], turns["speaker"]):
        key = speaker.lower()
        role = exact.get((doc_id, key)) or exact.get(("*", key))
        if role is None:
            if is_interviewer_label(speaker):
                role = INTERVIEWER
            else:
                role = UNKNOWN
                unknown.add(f"{doc_id}/{speaker}")
        roles.append(role)
    out = turns.copy()
    out["role"] = roles
    return out, sorted(unknown)


def unmatched_speakers(turns: pd.DataFrame, speakers: pd.DataFrame, files: dict[str, str]) -> list[str]:
    """Warnings for speaker-table rows that name no speaker of their document, as when its label was not read:
    one line per document read (``files``: doc_id -> transcript), and one for ``*`` rows that match no document."""
    said = {d: set(s) for d, s in turns.groupby("doc_id", sort=True)["speaker"]}
    lower = {d: {x.lower() for x in s} for d, s in said.items()}
    table = speakers.attrs.get("path", "speaker table")
    out = []
    for doc_id, rows in speakers.groupby("doc_id", sort=True):
        if doc_id == "*":
            names = [s for s in rows["speaker"] if not any(s.lower() in had for had in lower.values())]
            whose = "for every document (*) match no speaker read in any document"
        elif doc_id in said:
            names = [s for s in rows["speaker"] if s.lower() not in lower[doc_id]]
            whose = (f"of doc '{shown(doc_id)}' match no speaker read in {shown(files.get(doc_id, doc_id))} "
                     f"(read: {_listed(sorted(said[doc_id]))})")
        else:
            continue
        if names:
            out.append(f"{table}: speaker(s) {_listed(names)} {whose}; check each is written as the transcript "
                       "labels it (a label not read leaves its lines in the turn before)")
    return out


def unknown_doc_ids(speakers: pd.DataFrame, known: set[str], source: str) -> list[str]:
    """A warning for speaker-table rows whose doc_id (not ``*``) is none of ``known``, the study's doc_ids, so their
    roles are never used; ``source`` names where the ids come from. Each id that is a known one mistyped (in case,
    spacing, 0/O or 1/l) is followed by the id meant."""
    unknown = sorted(set(speakers["doc_id"]) - known - {"*"})
    if not unknown:
        return []
    names = [f"'{shown(d)}'" + (f" (did you mean '{shown(near)}'?)" if (near := _near_doc_id(d, known)) else "")
             for d in unknown]
    line = (f"{speakers.attrs.get('path', 'speaker table')}: rows of doc_id(s) {_first_few(names, 8)} name no "
            f"document in {source}, so their speakers get no role from them: correct the doc_id, or remove the rows")
    return [line]


_LOOKALIKE = str.maketrans({"o": "0", "l": "1"})


def _near_doc_id(doc_id: str, known: set[str]) -> str | None:
    """The one known doc_id that ``doc_id`` matches but for case, spacing, 0/O or 1/l; None if none or several."""
    def key(d: str) -> str:
        return "".join(d.lower().split()).translate(_LOOKALIKE)

    near = [k for k in known if key(k) == key(doc_id)]
    return near[0] if len(near) == 1 else None


def _listed(names: list[str], show: int = 8) -> str:
    """Names quoted and joined for a message, the first ``show`` of them."""
    return _first_few([f"'{shown(n)}'" for n in names], show)


def _first_few(items: list[str], show: int) -> str:
    """The first ``show`` items joined for a message, and how many more there are."""
    return ", ".join(items[:show]) + (f" and {len(items) - show} more" if len(items) > show else "")


def known_speakers(speakers: pd.DataFrame, doc_id: str) -> set[str]:
    """Speaker labels the table knows for a document (used to accept rare labels)."""
    mask = speakers["doc_id"].isin([doc_id, "*"])
    return set(speakers.loc[mask, "speaker"])


def manifest_for_paths(paths: list[str | os.PathLike], outputs: tuple[str | os.PathLike, ...] = ()) -> pd.DataFrame:
    """A manifest for loose files/folders with no manifest: doc_id = file stem, trust unknown.

    A file given twice (or inside a folder also given) is read once; in folders, Word's ``~$`` lock files,
    macOS's ``._`` files and the tool's own outputs (see :func:`folder_files`) are passed over, and documents
    of a type the tool cannot read are named in a warning in the result's ``attrs["warnings"]``.
    """
    files, seen, unread = [], set(), []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            inside = folder_files(p, outputs)
            found = [f for f in inside if _transcript_name(f)]
            unread += _unreadable(p, inside)
        elif p.exists():
            found = [p]
        else:
            raise DiscourseError("file not found", p)
        for f in found:
            key = _file_key(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    _refuse_one_id_twice(files, paths[0])
    df = pd.DataFrame({"doc_id": [f.stem for f in files], "file": [str(f) for f in files]})
    ids: dict[str, tuple[str, str]] = {}
    for f in files:
        check_doc_id(f.stem, f, "its name, as ", "rename the file, or give a manifest")
        case_clash(f.stem, ids, f"file {shown(f)}", paths[0])
    df["trust"] = UNKNOWN
    df["path"] = [str(Path(f).resolve()) for f in df["file"]]
    df = df.sort_values("doc_id", kind="stable").reset_index(drop=True)
    if unread:
        df.attrs["warnings"] = [_unreadable_warning(unread)]
    return df


def _refuse_one_id_twice(files: list[Path], where: str | os.PathLike) -> None:
    """Two files with one name (``a.txt``, ``a.docx``) would both be doc ``a``: name both."""
    by_id: dict[str, Path] = {}
    for f in files:
        other = by_id.setdefault(f.stem, f)
        if other is not f:
            raise DiscourseError(f"two files would both be doc '{shown(f.stem)}', {shown(other)} and {shown(f)}: "
                                 "rename one, or give a manifest", where)


def folder_files(folder: Path, outputs: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """The files under ``folder``, sorted, but for hidden ones (a name, or a folder inside ``folder``, starting
    with ``.``: `.DS_Store`, `.ipynb_checkpoints/`, `.cache/`) and the tool's own outputs inside it: ``outputs``
    (this run's output files and folders) and any ``classify`` output folder (one holding run.json and
    predictions.parquet).

    An output that is ``folder`` itself, or holds it, passes nothing over: a folder given is read."""
    files = [f for f in folder.rglob("*")
             if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts)]
    runs = [f.parent for f in files if f.name == "run.json" and (f.parent / "predictions.parquet").is_file()]
    root = _real(folder)
    skip = [o for o in map(_real, (*outputs, *runs)) if root in o.parents]

    def theirs(f: Path) -> bool:
        real = _real(f)
        return any(o == real or o in real.parents for o in skip)

    return sorted(f for f in files if not (skip and theirs(f)))


def _real(path: str | os.PathLike) -> Path:
    """``path`` absolute with its folders' links resolved (not a link the file itself is, nor a missing one's)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _unreadable(folder: Path, files: list[Path]) -> list[str]:
    """Those of ``files`` (from :func:`folder_files`, so none hidden) of a document type the tool cannot read,
    as the user would name them; lock files are passed over."""
    return [str(folder / f.relative_to(folder)) for f in files
            if f.suffix.lower() in UNREAD_TYPES and not f.name.startswith(NOT_TRANSCRIPTS)]


def _unreadable_warning(names: list[str], show: int = 5) -> str:
    return (f"{len(names)} file(s) of a type the tool does not read are skipped: "
            f"{_first_few([shown(n) for n in names], show)} (to read a transcript, save it as .docx or .txt)")


def _transcript_name(path: Path) -> bool:
    """A name a transcript in a folder may have: a known type, not a lock file or resource fork."""
    return path.suffix.lower() in FORMATS and not path.name.startswith(NOT_TRANSCRIPTS)


def _looks_like_transcript(path: Path) -> bool:
    """A file the user would expect to be read: a transcript's type, and for a CSV, speaker and text columns
    (so a folder's manifest.csv or speakers.csv is not one)."""
    if not _transcript_name(path):
        return False
    return path.suffix.lower() != ".csv" or {"speaker", "text"} <= _csv_header(path)


def select_documents(manifest: pd.DataFrame, paths: list[str | os.PathLike],
                     outputs: tuple[str | os.PathLike, ...] = ()) -> pd.DataFrame:
    """Rows of the manifest whose file is one of ``paths`` (files or folders); all rows if none given.

    Transcripts under ``paths`` that the manifest does not list are not read: a warning naming them is put in
    the result's ``attrs["warnings"]`` (:func:`discourse.study.read_study` reports it with the study's), and
    another names documents of a type the tool cannot read. The tool's own outputs in a folder (see
    :func:`folder_files`) are neither.
    """
    if not paths:
        return manifest
    wanted: set[str] = set()
    candidates: list[tuple[Path, str]] = []  # (file, as the user would name it)
    unread: list[str] = []
    listed = set(manifest["path"])
    for p in paths:
        p = Path(p)
        if p.is_dir():
            wanted |= {str(f.resolve()) for f in p.rglob("*") if f.is_file()}
            files = folder_files(p, outputs)
            candidates += [(f, f.relative_to(p).as_posix()) for f in files]
            unread += _unreadable(p, [f for f in files if str(f.resolve()) not in listed])
        elif p.exists():
            wanted.add(str(p.resolve()))
            candidates.append((p, str(p)))
        else:
            raise DiscourseError("file not found", p)
    out = manifest[manifest["path"].isin(wanted)].reset_index(drop=True)
    unlisted = sorted({name for f, name in candidates if str(f.resolve()) not in listed and _looks_like_transcript(f)})
    warnings = ([_unlisted_warning(unlisted)] if unlisted else []) + ([_unreadable_warning(unread)] if unread else [])
    if warnings:
        out.attrs["warnings"] = warnings
    return out


def _unlisted_warning(names: list[str], show: int = 5) -> str:
    return (f"{len(names)} transcript file(s) given are not in the manifest and are not read: "
            f"{_first_few([shown(n) for n in names], show)} (add them to the manifest to read them)")
