"""The study manifest: which file is which document, its trust and metadata; who is who.

``manifest.csv`` has one row per document: ``doc_id``, ``file`` (relative to the
manifest), ``trust`` and any other document columns. The speaker table
(``speakers.csv`` beside the manifest unless named) maps ``doc_id, speaker`` to
``role``; ``doc_id`` ``*`` applies to every document.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import DiscourseError
from .tables import read_table
from .transcripts import FORMATS, is_interviewer_label

INTERVIEWER = "interviewer"
UNKNOWN = "unknown"
RESERVED = {"path", "turn", "speaker", "role", "text", "start", "end", "t_start", "t_end", "excerpt_id", "codes",
            "confidence"}


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read the manifest; add ``path`` (absolute file path). Checks ids and files."""
    path = Path(path)
    df = read_table(path, required=("doc_id", "file"))
    df = df.astype({"doc_id": str, "file": str})
    df["doc_id"] = df["doc_id"].str.strip()
    if (df["doc_id"] == "").any():
        row = int((df["doc_id"] == "").to_numpy().argmax()) + 2
        raise DiscourseError(f"row {row} has no doc_id", path)
    dup = df["doc_id"][df["doc_id"].duplicated()]
    if len(dup):
        raise DiscourseError(f"duplicate doc_id '{dup.iloc[0]}': every document needs its own id", path)
    reserved = sorted(c for c in map(str, df.columns) if c in RESERVED or c.startswith(("p_", "n_")))
    if reserved:
        raise DiscourseError(
            f"column(s) {', '.join(reserved)} would clash with the tool's own columns (speaker, role and p_<code> "
            "come from the transcripts, the speaker table and the model): rename them, e.g. doc_role", path)
    if "trust" not in df.columns:
        df["trust"] = UNKNOWN
    meta = [c for c in df.columns if c not in ("doc_id", "file")]
    df[meta] = df[meta].astype(str).apply(lambda col: col.str.strip())  # "North " and "North" are one group
    df[meta] = df[meta].replace({"": UNKNOWN, "nan": UNKNOWN})  # a blank cell groups as "unknown", as trust always did
    base = path.resolve().parent
    df["path"] = [str((base / f).resolve()) for f in df["file"]]
    for doc_id, file, p in zip(df["doc_id"], df["file"], df["path"]):
        if not Path(p).is_file():
            raise DiscourseError(f"doc '{doc_id}' names file '{file}', which does not exist", path)
    return df.sort_values("doc_id", kind="stable").reset_index(drop=True)


def read_speakers(path: str | os.PathLike | None, optional: bool = False) -> pd.DataFrame:
    """Read the speaker table (doc_id, speaker, role). A missing file is an error, or an empty table if ``optional``.

    Roles are compared in lower case (``Interviewer`` is the interviewer; ``Staff`` and ``staff`` one role), and
    speaker labels are matched to the transcripts in lower case, so a label may be listed once per document.
    """
    if path is None or (optional and not Path(path).exists()):
        return pd.DataFrame(columns=["doc_id", "speaker", "role"])
    df = read_table(path, required=("doc_id", "speaker", "role"))
    df = df.astype({"doc_id": str, "speaker": str, "role": str})
    for col in ("doc_id", "speaker", "role"):
        df[col] = df[col].str.strip()
    df["role"] = df["role"].str.lower()
    dup = df[df.assign(key=df["speaker"].str.lower()).duplicated(["doc_id", "key"])]
    if len(dup):
        r = dup.iloc[0]
        raise DiscourseError(f"speaker '{r.speaker}' of doc '{r.doc_id}' is listed twice", path)
    return df


def default_speakers_path(manifest_path: str | os.PathLike) -> Path:
    return Path(manifest_path).resolve().parent / "speakers.csv"


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


def known_speakers(speakers: pd.DataFrame, doc_id: str) -> set[str]:
    """Speaker labels the table knows for a document (used to accept rare labels)."""
    mask = speakers["doc_id"].isin([doc_id, "*"])
    return set(speakers.loc[mask, "speaker"])


def manifest_for_paths(paths: list[str | os.PathLike]) -> pd.DataFrame:
    """A manifest for loose files/folders with no manifest: doc_id = file stem, trust unknown."""
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in FORMATS and f.is_file())
        elif p.exists():
            files.append(p)
        else:
            raise DiscourseError("file not found", p)
    df = pd.DataFrame({"doc_id": [f.stem for f in files], "file": [str(f) for f in files]})
    dup = df["doc_id"][df["doc_id"].duplicated()]
    if len(dup):
        raise DiscourseError(f"two files would both be doc '{dup.iloc[0]}': give them a manifest", paths[0])
    df["trust"] = UNKNOWN
    df["path"] = [str(Path(f).resolve()) for f in df["file"]]
    return df.sort_values("doc_id", kind="stable").reset_index(drop=True)


def select_documents(manifest: pd.DataFrame, paths: list[str | os.PathLike]) -> pd.DataFrame:
    """Rows of the manifest whose file is one of ``paths`` (files or folders); all rows if none given."""
    if not paths:
        return manifest
    wanted = set()
    for p in paths:
        p = Path(p).resolve()
        if p.is_dir():
            wanted |= {str(f.resolve()) for f in p.rglob("*") if f.is_file()}
        elif p.exists():
            wanted.add(str(p))
        else:
            raise DiscourseError("file not found", p)
    return manifest[manifest["path"].isin(wanted)].reset_index(drop=True)
