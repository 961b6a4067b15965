"""Batch classification: read, segment, embed, predict, document by document, resumable.

Each document's excerpts and probabilities are kept in ``OUTDIR/.cache/docs``
under a key made of the file's hash, the model, the segmentation settings and
which turns are interviewers', so a re-run (or a run after an interruption)
reuses every finished document. Metadata (role, trust...) is attached afresh
on every run from the manifest and speaker table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .predict import PROBA_DECIMALS, proba_columns
from .segment import CORE, segment
from .study import Study
from .tables import write_table

CACHED = ["excerpt_id", "doc_id", "turn", "text", "start", "end", "n_sentences", "n_words"]


@dataclass(frozen=True)
class SegmentSettings:
    method: str = "parser"
    max_sentences: int = 3
    max_tokens: int = 120
    min_words: int = 3


def model_fingerprint(model_dir: str | Path) -> str:
    return hashlib.sha256((Path(model_dir) / "manifest.json").read_bytes()).hexdigest()[:16]


def document_key(doc, turns: pd.DataFrame, model_key: str, settings: SegmentSettings) -> str:
    interviewer_turns = ",".join(map(str, turns.loc[turns["role"] == "interviewer", "turn"]))
    blob = json.dumps([doc.doc_id, doc.sha256, model_key, settings.__dict__, interviewer_turns], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def classify_document(doc, turns: pd.DataFrame, model, nlp, settings: SegmentSettings) -> pd.DataFrame:
    """Excerpts of one document with their probabilities (no metadata beyond offsets)."""
    ex = segment(turns, nlp, max_sentences=settings.max_sentences, max_tokens=settings.max_tokens,
                 min_words=settings.min_words)
    out = ex[CACHED].copy()
    P = model.predict_proba(out["text"].tolist()) if len(out) else np.zeros((0, len(model.codes)))
    for j, col in enumerate(proba_columns(model.codes)):
        out[col] = np.round(P[:, j], PROBA_DECIMALS)
    return out


def classify_study(study: Study, model, model_key: str, nlp_loader, work_dir: Path,
                   settings: SegmentSettings = SegmentSettings(), progress=None,
                   strict: bool = False, adapt: bool = False) -> tuple[pd.DataFrame, dict]:
    """Predictions for every document of ``study``; returns the table and counts of reused/new docs.

    ``adapt`` applies EM prior correction: probabilities are adjusted from the
    training data's prevalence of each code to this corpus's estimated one.

    ``nlp_loader`` is called only if some document needs segmenting. A document
    that fails is added to ``study.skipped`` (fatal with ``strict``).
    """
    cache = Path(work_dir) / "docs"
    frames, stats, nlp = [], {"reused": 0, "classified": 0}, None
    docs = study.documents
    for doc in progress(docs) if progress else docs:
        turns = study.turns[study.turns["doc_id"] == doc.doc_id]
        key = document_key(doc, turns, model_key, settings)
        path = cache / f"{doc.doc_id}.{key}.parquet"
        if path.exists():
            try:
                frames.append(pd.read_parquet(path))
                stats["reused"] += 1
                continue
            except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
                path.unlink(missing_ok=True)
        try:
            if nlp is None:
                nlp = nlp_loader()
            part = classify_document(doc, turns, model, nlp, settings)
        except DiscourseError as exc:
            if strict:
                raise
            study.skipped.append((doc.doc_id, exc.line()))
            continue
        for old in cache.glob(f"{doc.doc_id}.*.parquet"):
            old.unlink()
        write_table(part, path)
        frames.append(part)
        stats["classified"] += 1
    if not frames:
        raise DiscourseError("no document could be classified")
    pred = pd.concat(frames, ignore_index=True)
    meta = study.turns.drop(columns=["text", "start", "end"])
    pred = pred.merge(meta, on=["doc_id", "turn"], how="left", validate="many_to_one")
    meta_cols = [c for c in meta.columns if c not in ("doc_id", "turn", "speaker", "role")]
    pcols = proba_columns(model.codes)
    if adapt:  # EM prior correction to this corpus's own prevalence of each code
        from .model import adapt_priors

        prior = np.array([model.info_["train_prior"][c] for c in model.codes])
        Q, pi = adapt_priors(pred[pcols].to_numpy(), prior)
        pred[pcols] = np.round(Q, PROBA_DECIMALS)
        stats["adapted_prevalence"] = {c: round(float(v), 4) for c, v in zip(model.codes, pi)}
    pred["codes"] = [";".join(cs) for cs in model.codes_from_proba(pred[pcols].to_numpy())]
    conf = decision_confidence(pred[pcols].to_numpy(), np.asarray(model.thresholds_))
    pred["confidence"] = np.round(conf, PROBA_DECIMALS)
    order = CORE + meta_cols + pcols + ["codes", "confidence"]
    pred = pred[order].sort_values(["doc_id", "start", "end"], kind="stable").reset_index(drop=True)
    return pred, stats


def decision_confidence(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Probability that an excerpt's whole code decision is right: min over codes of p or 1-p.

    For each code the calibrated probability that the decision taken is right is
    ``p`` if the code was assigned, ``1 - p`` if not; the excerpt's confidence is
    the smallest of these.
    """
    right = np.where(P >= thresholds, P, 1 - P)
    return right.min(axis=1) if right.size else np.zeros(len(P))
