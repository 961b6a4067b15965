"""A study: the documents a manifest names, read into turns with roles and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .errors import DiscourseError
from .manifest import assign_roles, case_clash, check_doc_id, known_speakers, unmatched_speakers
from .transcripts import Transcript, read_transcripts

DOC_META_EXCLUDE = ("file", "path")


@dataclass
class Study:
    """Documents read from a manifest, and what went wrong on the way."""

    documents: list[Transcript] = field(default_factory=list)
    turns: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, reason)
    warnings: list[str] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)  # every doc_id of the study's manifest, read now or not


def read_study(
    manifest: pd.DataFrame,
    speakers: pd.DataFrame,
    *,
    strict: bool = False,
    progress=None,
    csv_ids: bool = False,
) -> Study:
    """Read every document of ``manifest``; attach trust, other metadata and roles to turns.

    A document that cannot be read is skipped and reported (``strict`` makes it
    fatal). ``progress`` wraps the row iterator (for a progress bar). ``csv_ids``
    (files given without a manifest): a CSV transcript's own ``doc_id`` column
    names its documents, instead of the manifest row selecting one of them.
    """
    study = Study(warnings=list(manifest.attrs.get("warnings", ())),  # e.g. transcripts the manifest leaves out
                  listed=set(manifest["doc_id"]))
    meta_cols = [c for c in manifest.columns if c not in DOC_META_EXCLUDE and c != "doc_id"]
    rows = manifest.to_dict("records")
    frames, seen_ids = [], {}
    for row in progress(rows) if progress else rows:
        doc_id = row["doc_id"]
        try:
            own_ids = csv_ids and str(row["path"]).lower().endswith(".csv")
            docs = read_transcripts(row["path"], doc_id=None if own_ids else doc_id,
                                    known_speakers=known_speakers(speakers, doc_id))
        except DiscourseError as exc:
            if strict:
                raise
            study.skipped.append((doc_id, exc.line()))
            continue
        for doc in docs:
            earlier, where = seen_ids.get(doc.doc_id.lower(), ("", ""))
            if earlier == doc.doc_id:
                raise DiscourseError(f"two documents would both be doc '{doc.doc_id}', one {where} and one in "
                                     f"{row['path']}: give them a manifest", row["path"])
            check_doc_id(doc.doc_id, row["path"], fix="choose another in its doc_id column, or give a manifest")
            if doc.turns.empty:
                reason = f"{row['path']}: no turns of speech found"
                if strict:
                    raise DiscourseError("no turns of speech found", row["path"])
                study.skipped.append((doc_id, reason))
                continue
            case_clash(doc.doc_id, seen_ids, f"in {row['path']}", row["path"])
            study.documents.append(doc)
            study.warnings.extend(doc.warnings)
            turns = doc.turns.copy()
            for c in meta_cols:
                turns[c] = row[c]
            frames.append(turns)
    if frames:
        turns = pd.concat(frames, ignore_index=True)
        turns, unknown = assign_roles(turns, speakers)
        if unknown:
            shown = ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            study.warnings.append(
                f"{len(unknown)} speaker(s) not in the speaker table get role 'unknown': {shown}"
            )
        study.warnings.extend(unmatched_speakers(turns, speakers, {d.doc_id: d.path for d in study.documents}))
        order = ["doc_id", "turn", "speaker", "role"] + meta_cols
        extra = [c for c in turns.columns if c not in order + ["text", "start", "end"]]
        study.turns = turns[order + extra + ["text", "start", "end"]]
    return study
