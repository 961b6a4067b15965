"""Batch classification: read, segment, embed, predict, in chunks of documents, resumable.

Documents are worked in chunks (``CHUNK_DOCS`` at a time): one spaCy pass over
all the chunk's turns, one encoder pass over all its excerpts (batched, sorted
by length), one classifier pass. Each finished document is saved to
``OUTDIR/.cache/docs`` under a key made of the file's hash, the model, the
segmentation settings, the segmenter's version (this code's, spaCy's and its
model package's) and the turns (boundaries, speakers, which are
interviewers'), so a re-run (or a run after an interruption) reuses every
finished document. Metadata (role, trust...) is attached afresh on every run
from the manifest and speaker table.

Chunks can be worked in-process (the default) or by any ``map_chunks``
callable, such as :func:`discourse.cluster.map_on_cluster` for a Dask cluster;
the chunks are the same either way, so the results are too.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .predict import PROBA_DECIMALS, adapt_table, proba_columns
from .segment import CORE, segment, segmenter_fingerprint
from .study import Study
from .tables import write_table

CACHED = ["excerpt_id", "doc_id", "turn", "text", "start", "end", "n_sentences", "n_words"]
CHUNK_DOCS = 4  # documents per unit of work (one spaCy pass, one encoder pass, then saved)
STAGES = ("segment", "embed", "predict")
_CACHE_NAME = re.compile(r"(?P<doc_id>.*)\.[0-9a-f]{16}\.parquet")


@dataclass(frozen=True)
class SegmentSettings:
    method: str = "parser"
    max_sentences: int = 3
    max_tokens: int = 120
    min_words: int = 3


def model_fingerprint(model_dir: str | Path) -> str:
    return hashlib.sha256((Path(model_dir) / "manifest.json").read_bytes()).hexdigest()[:16]


def read_run(outdir: str | Path) -> dict:
    """A classify folder's ``run.json`` ({} if there is none); a file that is not JSON is a one-line error."""
    path = Path(outdir) / "run.json"
    if not path.is_file():
        return {}
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DiscourseError(f"not readable as JSON ({exc}): `discourse classify -o` writes it", path) from None
    return run if isinstance(run, dict) else {}


def run_model(run: dict) -> dict:
    """The ``model`` part of a run record ({} if there is none)."""
    model = run.get("model")
    return model if isinstance(model, dict) else {}


def check_same_model(run: dict, model_dir: str | Path, outdir: str | Path) -> None:
    """Refuse ``model_dir`` unless it is the model the run record says classified ``outdir``: its name and
    codebook go into the report and the QDA project. A record without a fingerprint is not checked."""
    used = run_model(run)
    recorded = used.get("manifest_sha256")
    if recorded and recorded != model_fingerprint(model_dir):
        raise DiscourseError(
            f"these predictions were made by model '{used.get('folder')}' (manifest {recorded}), "
            f"not by {model_dir}: pass that model's folder with --model", outdir)


def document_key(doc, turns: pd.DataFrame, model_key: str, settings: SegmentSettings) -> str:
    """The key of a document's finished excerpts: anything that can change them changes it."""
    blob = json.dumps([doc.doc_id, doc.sha256, model_key, settings.__dict__, segmenter_fingerprint(settings.method),
                       turns_digest(turns)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def turns_digest(turns: pd.DataFrame) -> str:
    """A hash of the turns as segmenting sees them: number, offsets, speaker, and whether an interviewer's."""
    interviewer = turns["role"] == "interviewer" if "role" in turns.columns else pd.Series(False, index=turns.index)
    rows = [[int(t), int(a), int(b), str(s), bool(i)]
            for t, a, b, s, i in zip(turns["turn"], turns["start"], turns["end"], turns["speaker"], interviewer)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def classify_turns(turns: pd.DataFrame, model, nlp, settings: SegmentSettings) -> tuple[pd.DataFrame, dict]:
    """Excerpts of the documents in ``turns`` with their probabilities, and seconds per stage.

    One spaCy pass over all turns, one encoder pass over all excerpts, one
    classifier pass; no metadata beyond offsets.
    """
    t0 = time.perf_counter()
    ex = segment(turns, nlp, max_sentences=settings.max_sentences, max_tokens=settings.max_tokens,
                 min_words=settings.min_words)
    out = ex[CACHED].copy()
    texts = out["text"].tolist()
    t1 = time.perf_counter()
    emb = model.embed(texts) if texts else None
    t2 = time.perf_counter()
    P = model.predict_proba(texts, embeddings=emb) if texts else np.zeros((0, len(model.codes)))
    for j, col in enumerate(proba_columns(model.codes)):
        out[col] = np.round(P[:, j], PROBA_DECIMALS)
    return out, {"segment": t1 - t0, "embed": t2 - t1, "predict": time.perf_counter() - t2}


def chunks_of(doc_ids: list[str], size: int = CHUNK_DOCS) -> list[list[str]]:
    """Consecutive groups of at most ``size`` documents, in the order given."""
    return [doc_ids[i:i + size] for i in range(0, len(doc_ids), max(1, size))]


def isolating(run_chunk: Callable, turns: pd.DataFrame) -> tuple[pd.DataFrame, dict, list[tuple[str, str]]]:
    """Work a chunk; if it fails, work its documents one by one and report the failing ones.

    Any exception counts (an unexpected one is reported as a one-line internal
    error naming the document), so one bad document never stops the others.
    """
    try:
        return (*run_chunk(turns), [])
    except Exception:  # noqa: BLE001 - narrowed to the failing documents below
        parts, seconds, failed = [], dict.fromkeys(STAGES, 0.0), []
        for doc_id, doc_turns in turns.groupby("doc_id", sort=False):
            try:
                part, secs = run_chunk(doc_turns)
            except Exception as exc:  # noqa: BLE001 - reported per document
                failed.append((str(doc_id), failure_line(str(doc_id), exc)))
                continue
            parts.append(part)
            seconds = {k: seconds[k] + secs[k] for k in STAGES}
        return (pd.concat(parts, ignore_index=True) if parts else None), seconds, failed


def segment_study(study: Study, nlp, settings: SegmentSettings = SegmentSettings(), strict: bool = False) -> pd.DataFrame:
    """Excerpts of every document of ``study``, as ``discourse segment`` writes them (no model).

    A document that fails is added to ``study.skipped`` and its excerpts left
    out, so one bad document never stops the others (fatal with ``strict``).
    """
    def run_chunk(turns: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        ex = segment(turns, nlp, max_sentences=settings.max_sentences, max_tokens=settings.max_tokens,
                     min_words=settings.min_words)
        return ex, dict.fromkeys(STAGES, 0.0)

    excerpts, _, failed = isolating(run_chunk, study.turns)
    if failed and strict:
        doc_id, why = failed[0]
        raise DiscourseError(why if doc_id in why else f"{doc_id}: {why}")
    study.skipped.extend(failed)
    if excerpts is None:
        raise DiscourseError("no document could be segmented")
    return excerpts


def failure_line(doc_id: str, exc: Exception) -> str:
    """One line saying why a document failed: the tool's own message, or an internal error naming the document."""
    if isinstance(exc, DiscourseError):
        return exc.line()
    detail = " ".join(str(exc).split())
    return f"{doc_id}: internal error: {type(exc).__name__}" + (f": {detail}" if detail else "")


def map_in_process(model, nlp_loader: Callable, settings: SegmentSettings) -> Callable:
    """A ``map_chunks`` that works each chunk here, in order, loading spaCy once, on first need.

    (Segmenting the next chunk in a second thread while this one is encoded was
    measured and is slower: the two threads contend for the interpreter lock.)
    """
    nlp: list = []

    def run_chunk(turns: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        if not nlp:
            nlp.append(nlp_loader())
        return classify_turns(turns, model, nlp[0], settings)

    def run(chunks: list[pd.DataFrame]) -> Iterator[tuple[int, pd.DataFrame | None, dict, list]]:
        for i, turns in enumerate(chunks):
            yield (i, *isolating(run_chunk, turns))

    return run


def classify_study(study: Study, model, model_key: str, nlp_loader: Callable, work_dir: Path,
                   settings: SegmentSettings = SegmentSettings(), progress: Callable | None = None,
                   strict: bool = False, adapt: bool = False, map_chunks: Callable | None = None,
                   chunk_docs: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Predictions for every document of ``study``; returns the table and run statistics.

    Statistics: documents ``reused`` from the work folder and ``classified``
    now, and ``seconds`` spent per stage (segment, embed, predict; summed over
    workers when a cluster works the chunks).

    ``adapt`` applies EM prior correction: probabilities are adjusted from the
    training data's prevalence of each code to this corpus's estimated one.
    ``nlp_loader`` is called only if some document needs segmenting.
    ``map_chunks(list_of_turn_tables)`` yields ``(index, excerpts, seconds,
    failed)`` per chunk in any order (default: in this process). A document
    that fails is added to ``study.skipped`` (fatal with ``strict``).
    """
    cache = Path(work_dir) / "docs"
    frames: dict[str, pd.DataFrame] = {}
    stats: dict = {"reused": 0, "classified": 0, "seconds": dict.fromkeys(STAGES, 0.0)}
    todo: dict[str, Path] = {}
    turns_of = dict(tuple(study.turns.groupby("doc_id", sort=False)))
    for doc in study.documents:
        turns = turns_of.get(doc.doc_id, study.turns.iloc[:0])
        path = cache / f"{doc.doc_id}.{document_key(doc, turns, model_key, settings)}.parquet"
        if path.exists():
            try:
                frames[doc.doc_id] = pd.read_parquet(path)
                stats["reused"] += 1
                continue
            except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
                path.unlink(missing_ok=True)
        todo[doc.doc_id] = path
    groups = chunks_of(list(todo), chunk_docs or CHUNK_DOCS)
    chunk_turns = [pd.concat([turns_of[d] for d in g if d in turns_of] or [study.turns.iloc[:0]], ignore_index=True)
                   for g in groups]
    runner = map_chunks or map_in_process(model, nlp_loader, settings)
    results = _save_each(runner(chunk_turns) if groups else iter(()), groups, todo, frames, stats, study, strict)
    for _ in progress(results, total=len(todo)) if progress else results:
        pass
    if not frames:
        raise DiscourseError("no document could be classified")
    pred = pd.concat([frames[d.doc_id] for d in study.documents if d.doc_id in frames], ignore_index=True)
    return _finish(pred, study, model, adapt, stats), stats


def _save_each(results: Iterable, groups: list[list[str]], todo: dict[str, Path], frames: dict,
               stats: dict, study: Study, strict: bool) -> Iterator[str]:
    """Save each finished document of each chunk as it arrives; yields document ids (for progress)."""
    for i, part, seconds, failed in results:
        stats["seconds"] = {k: stats["seconds"][k] + seconds[k] for k in STAGES}
        if failed and strict:
            doc_id, why = failed[0]
            raise DiscourseError(why if doc_id in why else f"{doc_id}: {why}")
        study.skipped.extend(failed)
        bad = {d for d, _ in failed}
        by_doc = dict(tuple(part.groupby("doc_id", sort=False))) if part is not None else {}
        for doc_id in groups[i]:
            if doc_id in bad:
                yield doc_id
                continue
            doc_part = by_doc.get(doc_id, part.iloc[:0] if part is not None else None)
            path = todo[doc_id]
            remove_cached(path.parent, doc_id)
            write_table(doc_part.reset_index(drop=True), path)
            frames[doc_id] = doc_part
            stats["classified"] += 1
            yield doc_id


def cached_doc_ids(folder: Path) -> set[str]:
    """The doc_ids whose finished excerpts ``folder`` holds (``<doc_id>.<16 hex>.parquet``)."""
    return {m.group("doc_id") for m in map(_CACHE_NAME.fullmatch, (f.name for f in folder.glob("*.parquet"))) if m}


def remove_cached(folder: Path, doc_id: str) -> None:
    """Delete the saved excerpts of exactly ``doc_id`` (``<doc_id>.<16 hex>.parquet``), under any key."""
    for old in folder.glob(glob.escape(doc_id) + ".*.parquet"):
        m = _CACHE_NAME.fullmatch(old.name)
        if m and m.group("doc_id") == doc_id:
            old.unlink(missing_ok=True)


def _finish(pred: pd.DataFrame, study: Study, model, adapt: bool, stats: dict) -> pd.DataFrame:
    """Attach metadata, (optionally) adapt priors, assign codes and confidence, sort."""
    meta = study.turns.drop(columns=["text", "start", "end"])
    pred = pred.merge(meta, on=["doc_id", "turn"], how="left", validate="many_to_one")
    meta_cols = [c for c in meta.columns if c not in ("doc_id", "turn", "speaker", "role")]
    pcols = proba_columns(model.codes)
    if adapt:  # EM prior correction to this corpus's own prevalence of each code (assigns the codes too)
        pred, stats["adapted_prevalence"] = adapt_table(pred, model)
    else:
        pred["codes"] = [";".join(cs) for cs in model.codes_from_proba(pred[pcols].to_numpy())]
    conf = decision_confidence(pred[pcols].to_numpy(), np.asarray(model.thresholds_))
    pred["confidence"] = np.round(conf, PROBA_DECIMALS)
    order = CORE + meta_cols + pcols + ["codes", "confidence"]
    return pred[order].sort_values(["doc_id", "start", "end"], kind="stable").reset_index(drop=True)


def decision_confidence(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Probability that an excerpt's whole code decision is right: min over codes of p or 1-p.

    For each code the calibrated probability that the decision taken is right is
    ``p`` if the code was assigned, ``1 - p`` if not; the excerpt's confidence is
    the smallest of these.
    """
    right = np.where(P >= thresholds, P, 1 - P)
    return right.min(axis=1) if right.size else np.zeros(len(P))
