"""Writing REFI-QDA: a classify folder as a .qdpx project, a codebook as a .qdc."""

from __future__ import annotations

import bisect
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree as ET

import pandas as pd

from . import __version__
from .codebook import Codebook
from .errors import DiscourseError
from .qdpx_xml import (
    _META,
    MODEL_USER,
    PROJECT_NS,
    _codes_xml,
    _el,
    _present,
    _xml_bytes,
    codebook_qdc_bytes,
    creation_time,
    guid_for,
)
from .tables import (
    atomic_path,
    read_table,
    zip_bytes,
)


def _zip_bytes(members: list[tuple[str, bytes]], created: str) -> bytes:
    """A zip with fixed timestamps, permissions and order: same members, same bytes."""
    stamp = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")
    when = max((stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second // 2 * 2),
               (1980, 1, 1, 0, 0, 0))
    return zip_bytes(members, when)


def _newline_map(text: str) -> tuple[str, Callable[[int], int]]:
    """Text with ``\\n`` line ends, and a function from old offsets to new ones."""
    removed = [m.start() for m in re.finditer("\r\n", text)]
    new = text.replace("\r\n", "\n").replace("\r", "\n")
    if not removed:
        return new, lambda o: o
    return new, lambda o: o - bisect.bisect_left(removed, o)


def _turn_starts(turns: pd.DataFrame, pred: pd.DataFrame, doc_id: str) -> list[tuple[str, int]]:
    """(speaker, start) of each turn of ``doc_id`` (of each excerpt, when the turns carry no offsets)."""
    rows = turns if "start" in turns.columns else pred
    rows = rows[rows["doc_id"].astype(str) == doc_id]
    return [(str(s), int(a)) for s, a in zip(rows["speaker"], rows["start"]) if pd.notna(a)]


def _redacted(text: str, newpos: Callable[[int], int], redactor, starts: list[tuple[str, int]],
              names: dict[tuple[str, str], str], doc_id: str) -> tuple[str, Callable[[int], int]]:
    """``text`` redacted, each named speaker's label made their pseudonym, and ``newpos`` carried on to it."""
    from .redact import label_spans

    shown = {s: p for (d, s), p in names.items() if d == doc_id}
    fixed = label_spans(text, [(s, newpos(a)) for s, a in starts], shown)
    red, redpos = redactor.with_offsets(text, fixed)
    return red, lambda p: redpos(newpos(p))


def export_qdpx(outdir: str | os.PathLike, codebook: Codebook, path: str | os.PathLike,
                created: str | None = None, model_name: str | None = None, redactor=None) -> dict:
    """Write a classify output folder as a .qdpx: texts, codebook, machine codings, speaker cases.

    One PlainTextSelection per excerpt with assigned codes (its exact span;
    texts get ``\\n`` line ends and offsets follow), one Coding per code by
    user "discourse model", its probability in a Note (NoteRef), one Case per
    speaker (``doc_id/speaker``) with variables role and trust and a
    SelectionRef to each of its selections. Guids are uuid5 of stable ids and
    dates are ``created`` (:func:`creation_time`): same input, same bytes.
    With a ``redactor`` (:class:`discourse.redact.Redactor`), names, places and
    organisations in the texts are replaced, selections follow the new offsets,
    and speaker labels that are names become ``Speaker N``, in the cases and
    where they open a turn in the texts (labels that are roles stay).
    Returns counts.
    """
    outdir = Path(outdir)
    created = creation_time(created)
    pred = read_table(outdir / "predictions.parquet", required=("excerpt_id", "doc_id", "speaker", "start", "end", "codes"))
    pred = pred.copy()
    pred["codes"] = pred["codes"].fillna("").astype(str)
    turns_path = outdir / "turns.parquet"
    turns = read_table(turns_path, required=("doc_id", "speaker")) if turns_path.exists() else pred
    names = {}
    if redactor is not None:  # named speakers become Speaker N per document
        from .redact import pseudonyms

        names = pseudonyms(turns)
    label = lambda doc_id, s: names.get((doc_id, s), s)  # noqa: E731
    from .pipeline import read_run, run_model

    run = run_model(read_run(outdir))
    thresholds = run.get("thresholds") or {}
    model_name = model_name or run.get("folder") or "model"
    known = set(codebook.ids)
    for c in sorted({c for cs in pred["codes"] for c in cs.split(";") if c}):
        if c not in known:
            raise DiscourseError(f"code '{c}' is assigned in predictions but is not in codebook '{codebook.name}'", outdir / "predictions.parquet")
        if f"p_{c}" not in pred.columns:
            raise DiscourseError(f"no p_{c} column for assigned code '{c}'", outdir / "predictions.parquet")

    user = guid_for("user", MODEL_USER)
    root = _el("Project", {"xmlns": PROJECT_NS, "name": f"discourse: {outdir.resolve().name}",
                           "origin": f"discourse {__version__}", "creatingUserGUID": user, "creationDateTime": created})
    _el("User", {"guid": user, "name": MODEL_USER}, parent=_el("Users", parent=root))
    _codes_xml(_el("CodeBook", parent=root), codebook)
    variables = _el("Variables", parent=root)
    for var in _META:
        _el("Variable", {"guid": guid_for("variable", var), "name": var, "typeOfVariable": "Text"}, parent=variables)

    speakers = (pd.concat([turns[["doc_id", "speaker"] + [m for m in _META if m in turns.columns]],
                           pred[["doc_id", "speaker"] + [m for m in _META if m in pred.columns]]])
                .drop_duplicates(["doc_id", "speaker"]).sort_values(["doc_id", "speaker"]))
    doc_ids = sorted(set(turns["doc_id"].astype(str)) | set(pred["doc_id"].astype(str)))
    cases_el = _el("Cases", parent=root) if len(speakers) else None
    sources_el = _el("Sources", parent=root)
    notes_el = ET.Element("Notes")
    members: list[tuple[str, bytes]] = []
    case_selections: dict[tuple[str, str], list[str]] = {}
    n_sel = n_codings = 0
    for doc_id in doc_ids:
        text_path = outdir / "texts" / f"{doc_id}.txt"
        if not text_path.is_file():
            raise DiscourseError(f"document '{doc_id}' has no canonical text: the classify output is incomplete", text_path)
        with open(text_path, encoding="utf-8", newline="") as fh:
            raw = fh.read()
        text, newpos = _newline_map(raw)
        if redactor is not None:
            text, newpos = _redacted(text, newpos, redactor, _turn_starts(turns, pred, doc_id), names, doc_id)
        sguid = guid_for("source", doc_id)
        members.append((f"sources/{sguid}.txt", text.encode("utf-8")))
        src = _el("TextSource", {"guid": sguid, "name": doc_id, "plainTextPath": f"internal://{sguid}.txt",
                                 "creatingUser": user, "creationDateTime": created}, parent=sources_el)
        doc = pred[(pred["doc_id"].astype(str) == doc_id) & (pred["codes"] != "")].sort_values(["start", "end", "excerpt_id"])
        for r in doc.to_dict("records"):
            start, end = int(r["start"]), int(r["end"])
            if "text" in r and raw[start:end] != r["text"]:
                raise DiscourseError(
                    f"excerpt {r['excerpt_id']} ({start}-{end}) does not match texts/{doc_id}.txt: rerun classify",
                    outdir / "predictions.parquet")
            sel_guid = guid_for("selection", r["excerpt_id"])
            sel = _el("PlainTextSelection", {"guid": sel_guid, "name": f"excerpt {r['excerpt_id']}",
                                             "startPosition": str(newpos(start)), "endPosition": str(newpos(end)),
                                             "creatingUser": user, "creationDateTime": created}, parent=src)
            bits = [f"{doc_id}/{label(doc_id, str(r['speaker']))}"] + [f"{m} {r[m]}" for m in _META if _present(r.get(m))]
            if "confidence" in r and pd.notna(r["confidence"]):
                bits.append(f"decision confidence {float(r['confidence']):.3f}")
            _el("Description", text=f"discourse excerpt {r['excerpt_id']}: " + "; ".join(bits), parent=sel)
            for code in sorted(c for c in r["codes"].split(";") if c):
                key = f"{r['excerpt_id']}:{code}"
                coding = _el("Coding", {"guid": guid_for("coding", key), "creatingUser": user,
                                        "creationDateTime": created}, parent=sel)
                _el("CodeRef", {"targetGUID": guid_for("code", code)}, parent=coding)
                note_guid = guid_for("note", key)
                _el("NoteRef", {"targetGUID": note_guid}, parent=coding)
                p = float(r[f"p_{code}"])
                thr = thresholds.get(code)
                note = _el("Note", {"guid": note_guid, "name": f"p({code}) = {p:.3f}", "creatingUser": user,
                                    "creationDateTime": created}, parent=notes_el)
                _el("PlainTextContent", text=(
                    f"discourse model '{model_name}': calibrated probability that excerpt {r['excerpt_id']} "
                    f"carries code '{code}' = {p:.4f}" + (f" (assigned at threshold {float(thr):.4f})" if thr is not None else "")
                ), parent=note)
                n_codings += 1
            case_selections.setdefault((doc_id, str(r["speaker"])), []).append(sel_guid)
            n_sel += 1
    for r in speakers.to_dict("records"):
        key = (str(r["doc_id"]), str(r["speaker"]))
        shown = label(key[0], key[1])
        case = _el("Case", {"guid": guid_for("case", f"{key[0]}/{shown}"), "name": f"{key[0]}/{shown}"},  # no name in a guid
                   parent=cases_el)
        _el("Description", text=f"speaker {shown} in document {key[0]}", parent=case)
        for var in _META:
            value = r.get(var)
            if _present(value):
                vv = _el("VariableValue", parent=case)
                _el("VariableRef", {"targetGUID": guid_for("variable", var)}, parent=vv)
                _el("TextValue", text=str(value), parent=vv)
        for sel_guid in case_selections.get(key, []):
            _el("SelectionRef", {"targetGUID": sel_guid}, parent=case)
    if len(notes_el):
        root.append(notes_el)
    qde = _xml_bytes(root)
    data = _zip_bytes([("project.qde", qde)] + sorted(members), created)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return {"documents": len(doc_ids), "selections": n_sel, "codings": n_codings, "cases": len(speakers)}



def export_qdc(codebook: Codebook, path: str | os.PathLike) -> None:
    """Write a codebook as a REFI-QDA .qdc (name = code id; Description = label, definition, include, exclude, examples)."""
    data = codebook_qdc_bytes(codebook)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
