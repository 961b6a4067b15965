"""The audit loop, part 1: choose the excerpts a researcher should review.

``select_for_review`` builds a review queue from a predictions table. A fixed
share of the budget (default 10%) is a simple random sample of *all*
excerpts, drawn first and marked ``sample = "random"``: only these rows
estimate the model's real accuracy without bias. The rest (``"uncertain"``)
are the excerpts whose code decision is most likely wrong, spread out by a
per-document cap and a round-robin over (role, most doubtful code).

Uncertainty is the calibrated probability that an excerpt's code decision is
wrong somewhere: ``1 - prod_j r_j`` where ``r_j`` is ``p_j`` for an assigned
code and ``1 - p_j`` for one not assigned (codes treated as independent).

The queue is written and read back by :mod:`discourse.review_file`; answers go
to the reviewed-codes store of :mod:`discourse.review_store`, which also turns
them into training rows (``discourse train --include-reviewed STORE``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .pipeline import read_run
from .tables import read_table

CONTEXT_CHARS = 200


def queue_columns(codes: Sequence[str]) -> list[str]:
    """The columns of a review queue, in order."""
    return (["review_id", "sample", "excerpt_id", "doc_id", "start", "end", "speaker", "role", "trust",
             "context_before", "text", "context_after", "model_codes"]
            + [f"p_{c}" for c in codes] + list(codes) + ["notes", "reviewer"])


# --- uncertainty ------------------------------------------------------------------


def _threshold_array(thresholds, codes: Sequence[str]) -> np.ndarray:
    if isinstance(thresholds, Mapping):
        missing = [c for c in codes if c not in thresholds]
        if missing:
            raise DiscourseError(f"no decision threshold for code(s) {', '.join(missing)}")
        return np.array([float(thresholds[c]) for c in codes])
    t = np.asarray(thresholds, float)
    if t.shape != (len(codes),):
        raise DiscourseError(f"{len(t)} thresholds for {len(codes)} codes")
    return t


def decision_right(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per excerpt and code, the calibrated probability that the yes/no decision taken is right."""
    return np.where(P >= thresholds, P, 1 - P)


def wrong_probability(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Probability that an excerpt's code decision is wrong for at least one code."""
    return 1 - np.prod(decision_right(P, thresholds), axis=1)


# --- context ----------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?\u2026][\"')\]\u2019\u201d]*\s+")
_SENTENCE_STOP = re.compile(r"[.!?\u2026][\"')\]\u2019\u201d]*(?=\s|$)")


def _tail(text: str, lo: int, hi: int, limit: int) -> str:
    """Up to ``limit`` characters of ``text[lo:hi]`` ending at ``hi``, starting at a sentence start."""
    if hi - lo <= limit:
        return text[lo:hi].strip()
    window = text[hi - limit:hi]
    m = _SENTENCE_END.search(window)
    if m and window[m.end():].strip():
        return window[m.end():].strip()
    cut = window.find(" ")
    return "\u2026" + window[cut + 1 if cut >= 0 else 0:].strip()


def _head(text: str, lo: int, hi: int, limit: int) -> str:
    """Up to ``limit`` characters of ``text[lo:hi]`` starting at ``lo``, ending at a sentence end."""
    if hi - lo <= limit:
        return text[lo:hi].strip()
    window = text[lo:lo + limit]
    ends = [m.end() for m in _SENTENCE_STOP.finditer(window)]
    if ends and window[:ends[-1]].strip():
        return window[:ends[-1]].strip()
    cut = window.rfind(" ")
    return window[:cut if cut > 0 else len(window)].strip() + "\u2026"


def excerpt_context(text: str, start: int, end: int, doc_turns: pd.DataFrame | None,
                    speaker: str = "", limit: int = CONTEXT_CHARS) -> tuple[str, str]:
    """Text just before and just after an excerpt (about ``limit`` characters each way).

    Inside the excerpt's own turn the context stops at sentence boundaries; if
    the excerpt opens (or closes) its turn, the neighbouring turn is shown with
    its speaker's label, so a reviewer sees the question being answered.
    """
    if not text:
        return "", ""
    start, end = max(0, min(int(start), len(text))), max(0, min(int(end), len(text)))
    if doc_turns is None or doc_turns.empty:
        return _tail(text, 0, start, limit), _head(text, end, len(text), limit)
    spans = doc_turns.sort_values("start", kind="stable")
    starts, ends = spans["start"].to_numpy(int), spans["end"].to_numpy(int)
    inside = np.where((starts <= start) & (ends >= end))[0]
    if not len(inside):
        return _tail(text, 0, start, limit), _head(text, end, len(text), limit)
    k = int(inside[-1])
    speakers = spans["speaker"].astype(str).tolist()
    before = _tail(text, starts[k], start, limit)
    after = _head(text, end, ends[k], limit)
    if len(before) < limit // 2 and k > 0:
        prev = f"{speakers[k - 1]}: {_tail(text, starts[k - 1], ends[k - 1], max(limit - len(before), limit // 2))}"
        before = prev + (f"\n{speaker or speakers[k]}: {before}" if before else "")
    if len(after) < limit // 2 and k + 1 < len(spans):
        nxt = f"{speakers[k + 1]}: {_head(text, starts[k + 1], ends[k + 1], max(limit - len(after), limit // 2))}"
        after = (f"{after}\n" if after else "") + nxt
    return before, after


# --- selection --------------------------------------------------------------------


def default_per_doc_cap(n_uncertain: int, doc_sizes: Mapping[str, int]) -> dict[str, int]:
    """Per document, twice its share of the uncertain picks in proportion to its size, and at least 2.

    With documents of equal size this is ``max(2, ceil(2 * n_uncertain / n_docs))``.
    """
    total = max(sum(doc_sizes.values()), 1)
    return {d: max(2, math.ceil(2 * n_uncertain * size / total)) for d, size in doc_sizes.items()}


def n_random_for(budget: int, random_share: float) -> int:
    """How many of ``budget`` rows are the random sample: share x budget rounded (half up), at least 1 when budget >= 10."""
    n = int(math.floor(budget * random_share + 0.5))
    if random_share > 0 and budget >= 10:
        n = max(n, 1)
    return min(n, budget)


def _round_robin(cand: pd.DataFrame, n: int, cap: Mapping[str, int], used: dict[str, int]) -> list[int]:
    """Take ``n`` rows from ``cand`` (sorted most doubtful first), one per stratum in turn, within ``cap`` per doc."""
    queues = {key: list(grp.index) for key, grp in cand.groupby("stratum", sort=False)}
    order = list(queues)  # strata in order of their most doubtful excerpt (cand is sorted)
    taken: list[int] = []
    while len(taken) < n and order:
        for key in list(order):
            q = queues[key]
            while q and used.get(cand.at[q[0], "doc_id"], 0) >= cap[cand.at[q[0], "doc_id"]]:
                q.pop(0)
            if not q:
                order.remove(key)
                continue
            i = q.pop(0)
            used[cand.at[i, "doc_id"]] = used.get(cand.at[i, "doc_id"], 0) + 1
            taken.append(i)
            if len(taken) >= n:
                break
    return taken


def select_for_review(pred: pd.DataFrame, turns: pd.DataFrame | None, texts: Mapping[str, str],
                      codes: Sequence[str], thresholds, budget: int, random_share: float = 0.10,
                      per_doc_cap: int | None = None, seed: int = 0, pool_factor: float = 1.5,
                      exclude: Iterable[str] = ()) -> pd.DataFrame:
    """A review queue of ``budget`` excerpts (see ``queue_columns``), deterministic for a seed.

    - ``random``: ``n_random_for(budget, random_share)`` excerpts drawn first, a
      simple random sample of the excerpts with probabilities that are not in
      ``exclude`` (reviewed before).
    - ``uncertain``: the rest, from the ``pool_factor x`` that many excerpts most
      likely to be wrong (``wrong_probability``), taken round-robin over strata
      (role, the code whose decision is most doubtful), most doubtful first,
      at most ``per_doc_cap`` per document (default ``default_per_doc_cap``:
      twice the document's share by size, at least 2). If the pool runs dry
      under the cap, the next most doubtful excerpts fill the budget, still
      within the cap (so an explicit cap may leave the queue short).
      ``exclude`` (e.g. excerpts already reviewed) only limits this part.

    The queue is sorted by document and position; reviewer columns are empty.
    """
    codes = list(codes)
    pcols = [f"p_{c}" for c in codes]
    missing = [c for c in ("excerpt_id", "doc_id", "text", *pcols) if c not in pred.columns]
    if missing:
        raise DiscourseError(f"the predictions have no column(s) {', '.join(missing)}")
    if int(budget) < 1:
        raise DiscourseError(f"the review budget must be at least 1 excerpt (got {budget})")
    if not 0 <= random_share <= 1:
        raise DiscourseError(f"the random share must be between 0 and 1 (got {random_share})")
    if per_doc_cap is not None and per_doc_cap < 1:
        raise DiscourseError(f"the per-document cap must be at least 1 (got {per_doc_cap})")
    fixed = set(queue_columns([])) | {"p_" + c for c in codes}
    clash = sorted(c for c in codes if c in fixed or c.startswith("p_"))
    if clash:
        raise DiscourseError(f"code id(s) {', '.join(clash)} are also columns of the review file: "
                             "rename the code(s) in the codebook (e.g. trust_code) and retrain")
    if pred["excerpt_id"].duplicated().any():
        dup = pred.loc[pred["excerpt_id"].duplicated(), "excerpt_id"].iloc[0]
        raise DiscourseError(f"excerpt_id {dup} appears more than once in the predictions")
    t = _threshold_array(thresholds, codes)
    df = pred.copy()
    for col in ("speaker", "role", "trust"):
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    for col in ("start", "end"):
        if col not in df.columns:
            df[col] = 0
    df["excerpt_id"] = df["excerpt_id"].astype(str)
    df["doc_id"] = df["doc_id"].astype(str)
    P = df[pcols].to_numpy(float)
    ok = ~np.isnan(P).any(axis=1) & (df["text"].fillna("").astype(str).str.strip() != "").to_numpy()
    df = df[ok].sort_values(["doc_id", "start", "end", "excerpt_id"], kind="stable").reset_index(drop=True)
    if df.empty:
        raise DiscourseError("no excerpt with probabilities to review")
    P = df[pcols].to_numpy(float)
    right = decision_right(P, t)
    df["_wrong"] = 1 - np.prod(right, axis=1)
    df["stratum"] = df["role"] + "|" + [codes[j] for j in right.argmin(axis=1)]
    budget = min(int(budget), len(df))

    rng = np.random.default_rng(seed)
    skip = set(map(str, exclude))
    # the random part is drawn from excerpts not reviewed before: a second round measures the retrained model
    # on excerpts it has not learned from (with nothing excluded, the draw is the same as drawing from all)
    eligible = np.flatnonzero(~df["excerpt_id"].isin(skip).to_numpy())
    n_rand = min(n_random_for(budget, random_share), len(eligible))
    rand_idx = sorted(rng.choice(eligible, size=n_rand, replace=False).tolist()) if n_rand else []
    n_unc = budget - n_rand
    sizes = df["doc_id"].value_counts().to_dict()
    cap = ({d: int(per_doc_cap) for d in sizes} if per_doc_cap is not None
           else default_per_doc_cap(n_unc, sizes))
    cand = df.drop(index=rand_idx)
    cand = cand[~cand["excerpt_id"].isin(skip)]
    cand = cand.sort_values(["_wrong", "excerpt_id"], ascending=[False, True], kind="stable")
    pool = cand.head(max(n_unc, int(math.ceil(pool_factor * n_unc))))
    used: dict[str, int] = {}
    unc_idx = _round_robin(pool, n_unc, cap, used)
    if len(unc_idx) < n_unc:  # pool exhausted under the cap: next most doubtful, still within the cap
        rest = cand.drop(index=unc_idx)
        rest = rest.assign(stratum="")
        unc_idx += _round_robin(rest, n_unc - len(unc_idx), cap, used)

    chosen = df.loc[rand_idx + unc_idx].copy()
    chosen["sample"] = ["random"] * len(rand_idx) + ["uncertain"] * len(unc_idx)
    chosen = chosen.sort_values(["doc_id", "start", "end", "excerpt_id"], kind="stable").reset_index(drop=True)
    before, after = [], []
    groups = {d: g for d, g in turns.groupby("doc_id", sort=False)} if turns is not None and len(turns) else {}
    for r in chosen.itertuples():
        b, a = excerpt_context(texts.get(r.doc_id, ""), r.start, r.end, groups.get(r.doc_id), r.speaker)
        before.append(b)
        after.append(a)
    chosen["context_before"], chosen["context_after"] = before, after
    width = max(3, len(str(len(chosen))))
    chosen["review_id"] = [f"R{i:0{width}d}" for i in range(1, len(chosen) + 1)]
    chosen["model_codes"] = (chosen["codes"].fillna("").astype(str) if "codes" in chosen.columns
                             else [";".join(c for c, h in zip(codes, row) if h) for row in chosen[pcols].to_numpy() >= t])
    for c in codes:
        chosen[c] = ""
    chosen["notes"], chosen["reviewer"] = "", ""
    chosen["start"], chosen["end"] = chosen["start"].astype(int), chosen["end"].astype(int)
    return chosen[queue_columns(codes)]


# --- writing the queue ------------------------------------------------------------

# --- predictions folders --------------------------------------------------------------


def read_classify_folder(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str], dict]:
    """predictions, turns (or None), canonical texts by doc_id and run.json (or {}) of a classify folder.

    ``path`` is the folder or its predictions.parquet (any predictions table
    works; turns and texts are then looked for beside it).
    """

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    pred_path = p / "predictions.parquet" if p.is_dir() else p
    pred = read_table(pred_path, required=("excerpt_id", "doc_id", "text"))
    if not any(c.startswith("p_") for c in pred.columns):
        raise DiscourseError("no p_<code> probability columns: is this a predictions table?", pred_path)
    for c in pred.columns:
        if c.startswith("p_"):
            try:
                pred[c] = pd.to_numeric(pred[c].replace("", np.nan)).astype(float)
            except (ValueError, TypeError):
                raise DiscourseError(f"column {c} is not numeric", pred_path) from None
    for c in ("start", "end"):
        if c in pred.columns:
            pred[c] = pd.to_numeric(pred[c], errors="coerce").fillna(0).astype(int)
    turns = read_table(folder / "turns.parquet") if (folder / "turns.parquet").is_file() else None
    texts = {}
    if (folder / "texts").is_dir():
        for f in sorted((folder / "texts").glob("*.txt")):
            with open(f, encoding="utf-8", newline="") as fh:
                texts[f.stem] = fh.read()
    return pred, turns, texts, read_run(folder)
