"""The reviewed-codes store: decisions with provenance, the model measured against them, training rows."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import time
from datetime import date
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .evaluate import cohen_kappa
from .review_file import first_spellings, reviewer_key, tidy_name
from .tables import read_table, write_table

LOCK_WAIT = 30.0  # seconds a writer waits for another one to finish with the store

STORE_COLUMNS = [
    "excerpt_id", "doc_id", "start", "end", "speaker", "role", "trust", "text", "sample", "reviewer",
    "review_date", "codes", "model_codes",  # p_<code> columns follow model_codes
    "notes", "model", "model_sha256", "review_file", "review_id",
]


# --- the store --------------------------------------------------------------------


def model_info(model_dir: str | os.PathLike) -> dict:
    """Provenance of a model folder: its name and the sha256 of its manifest.json."""
    folder = Path(model_dir)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise DiscourseError("not a model folder (no manifest.json)", folder)
    return {"model": folder.resolve().name, "model_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}


def store_columns(codes: Sequence[str]) -> list[str]:
    i = STORE_COLUMNS.index("model_codes") + 1
    return STORE_COLUMNS[:i] + [f"p_{c}" for c in codes] + STORE_COLUMNS[i:]


def read_store(store_path: str | os.PathLike) -> pd.DataFrame:
    """The reviewed-codes store (Parquet), checked for its key columns; one spelling per reviewer.

    Read under a shared lock (``store_lock``): a writer replacing the file meanwhile could otherwise
    hand pyarrow two different files.
    """
    path = Path(store_path)
    if path.suffix.lower() != ".parquet":
        raise DiscourseError("the reviewed-codes store is a .parquet file", path)
    if not path.is_file():
        return _read_store(path)  # file not found
    with store_lock(path, shared=True):
        return _read_store(path)


def _read_store(path: Path) -> pd.DataFrame:
    """``read_store`` without the lock (for a caller that holds it)."""
    df = read_table(path, required=("excerpt_id", "text", "codes", "reviewer", "review_date", "sample"))
    for col in ("codes", "model_codes"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: ";".join(v) if isinstance(v, (list, tuple, np.ndarray)) else v)
            df[col] = df[col].fillna("").astype(str)
    df["reviewer"] = df["reviewer"].fillna("").astype(str)
    df["review_date"] = df["review_date"].fillna("").astype(str)
    spelling = store_spellings(df)
    df["reviewer"] = [spelling.get(reviewer_key(n), tidy_name(n)) for n in df["reviewer"]]
    return df


def store_spellings(store: pd.DataFrame) -> dict[str, str]:
    """Reviewer key -> the spelling the store keeps for that reviewer: the one of their earliest decision."""
    if not len(store):
        return {}
    return first_spellings(store.sort_values("review_date", kind="stable")["reviewer"].astype(str))


def _keys(d: pd.DataFrame) -> pd.Series:
    """A decision's key: excerpt and reviewer (however the name is typed)."""
    return d["excerpt_id"].astype(str) + "\x00" + d["reviewer"].astype(str).map(reviewer_key)


def lock_path(store_path: str | os.PathLike) -> Path:
    """The lock file beside a store: ``reviewed.parquet.lock``."""
    path = Path(store_path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def store_lock(store_path: str | os.PathLike, wait: float | None = None, shared: bool = False) -> Iterator[None]:
    """Hold the store's lock (a flock on ``lock_path``, a file created owner-only) while the body runs.

    Every read-modify-write of a store runs under the exclusive lock, so two writers (two `audit apply`
    runs, two review pages) take turns instead of one overwriting the other's decisions; readers take
    it ``shared``. Waits up to ``wait`` seconds (default ``LOCK_WAIT``), then raises a DiscourseError
    naming the store. A reader that cannot create the lock file (a read-only folder) reads without it.
    """
    path = Path(store_path)
    fd = _open_lock(path, shared)
    if fd is None:
        yield
        return
    try:
        _flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, LOCK_WAIT if wait is None else wait, path)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock(path: Path, shared: bool) -> int | None:
    """The store's lock file, opened (created owner-only if need be); None for a reader that cannot."""
    lock = lock_path(path)
    try:
        if not shared:
            lock.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, (os.O_RDONLY if shared else os.O_RDWR) | os.O_CREAT, 0o600)
    except OSError as exc:
        if shared:
            return None
        raise DiscourseError(f"cannot open the store's lock file {lock.name} ({exc.strerror})", path) from None


def _flock(fd: int, op: int, wait: float, path: Path) -> None:
    """Take the flock ``op`` on ``fd``, trying until ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise DiscourseError(f"the store is busy: another `audit apply` or review page kept it for "
                                     f"{wait:g} s; try again in a moment", path) from None
            time.sleep(0.02)


def _store_rows(reviewed: pd.DataFrame, model_info: Mapping, today: str | None, codes: Sequence[str]) -> pd.DataFrame:
    """The reviewed rows as store rows: today's date, the model's provenance, the review file, every column."""
    new = reviewed.copy()
    new["review_date"] = today or date.today().isoformat()
    new["model"] = str(model_info.get("model", ""))
    new["model_sha256"] = str(model_info.get("model_sha256", ""))
    new["review_file"] = reviewed.attrs.get("file", "")
    cols = store_columns(codes)
    for col in cols:
        if col not in new.columns:
            new[col] = np.nan if col.startswith("p_") else ""
    return new[cols]


def merge_decisions(old: pd.DataFrame, new: pd.DataFrame, cols: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """The store ``old`` with the decisions ``new`` (both with columns ``cols``; old may have more) merged in,
    and how many of them were new, updated or unchanged.

    Key: excerpt_id + reviewer (``reviewer_key``); a reviewer keeps the spelling the store already has
    (``store_spellings``), else the first one given. An unchanged decision keeps its row (and date); a
    changed one replaces it.
    """
    old = old.copy()
    for col in cols:
        if col not in old.columns:
            old[col] = np.nan if col.startswith("p_") else ""
    old = old[list(cols) + [c for c in old.columns if c not in cols]]
    spelling = {**first_spellings(new["reviewer"]), **store_spellings(old)}
    new = new.assign(reviewer=[spelling.get(reviewer_key(n), tidy_name(n)) for n in new["reviewer"]])
    if len(old):  # one row per key (a store written before names were matched this way may have two)
        old = (old.assign(_k=_keys(old)).sort_values("review_date", kind="stable")
               .drop_duplicates("_k", keep="last").drop(columns="_k"))
    old_by_key = dict(zip(_keys(old), range(len(old))))
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    keep_new = []
    for k, row in zip(_keys(new), new.itertuples(index=False)):
        if k not in old_by_key:
            counts["new"] += 1
            keep_new.append(True)
            continue
        prev = old.iloc[old_by_key[k]]
        same = str(prev["codes"]) == row.codes and str(prev["notes"] or "") == str(row.notes or "") \
            and str(prev["sample"]) == row.sample
        counts["unchanged" if same else "updated"] += 1
        keep_new.append(not same)
    new = new[np.array(keep_new, dtype=bool)]
    drop = _keys(old).isin(set(_keys(new)))
    store = pd.concat([old[~drop], new], ignore_index=True) if len(old) else new.copy()
    return _tidy_store(store), counts


def _tidy_store(store: pd.DataFrame) -> pd.DataFrame:
    """Column types fixed (offsets Int64, probabilities float, the rest text) and rows in a fixed order."""
    store = store.copy()
    store["start"] = pd.to_numeric(store["start"], errors="coerce").astype("Int64")
    store["end"] = pd.to_numeric(store["end"], errors="coerce").astype("Int64")
    for col in store.columns:
        if col.startswith("p_"):
            store[col] = store[col].astype(float)
        elif col not in ("start", "end"):
            store[col] = store[col].fillna("").astype(str)
    return store.sort_values(["doc_id", "start", "end", "excerpt_id", "reviewer"], kind="stable").reset_index(drop=True)


def apply_review(reviewed: pd.DataFrame, store_path: str | os.PathLike, model_info: Mapping,
                 today: str | None = None, codes: Sequence[str] | None = None) -> dict:
    """Append reviewed decisions to the store (created if absent); returns ``review_summary`` plus counts.

    Key: excerpt_id + reviewer (matched however the name is typed; stored as
    the store already spells it). A decision already in the store with the
    same codes and notes is kept as it is (its date too); a changed one is
    replaced (the later decision wins). Rows carry the reviewer, today's date,
    the model folder and its manifest sha256, the model's codes and
    probabilities, the excerpt's position and text, the sample type and the
    review file's name. The store is read, merged and written under its lock
    (``store_lock``), so concurrent writers lose nothing.
    """
    path = Path(store_path)
    codes = list(codes) if codes is not None else [c[2:] for c in reviewed.columns if c.startswith("p_")]
    cols = store_columns(codes)
    new = _store_rows(reviewed, model_info, today, codes)
    with store_lock(path):
        old = _read_store(path) if path.exists() else pd.DataFrame(columns=cols)
        store, counts = merge_decisions(old, new, cols)
        write_table(store, path)
    summary = review_summary(store[store["model_sha256"] == str(model_info.get("model_sha256", ""))], codes)
    summary.update({"applied": len(reviewed), "skipped_blank": int(reviewed.attrs.get("skipped", 0)),
                    "store": str(path), "store_rows": len(store), **counts})
    return summary


# --- statistics -------------------------------------------------------------------


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (95% by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


MIN_FOR_INTERVAL = 10  # random-sample rows below which no kappa interval is given


def bootstrap_kappa(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of Cohen's kappa, resampling excerpts.

    With fewer than ``MIN_FOR_INTERVAL`` excerpts the interval is (nan, nan): too
    few to say, rather than a point that looks exact. Resamples in which kappa
    is not defined (both codings all yes or all no) are left out; if that is
    half of them or more (a code nobody used), the interval is (nan, nan) too.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if len(a) < MIN_FOR_INTERVAL:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    ks = []
    for i in idx:
        both = np.concatenate([a[i], b[i]])
        if both.min() != both.max():
            ks.append(cohen_kappa(a[i], b[i]))
    if len(ks) < n_boot / 2:
        return (float("nan"), float("nan"))
    return float(np.quantile(ks, 0.025)), float(np.quantile(ks, 0.975))


def _code_matrix(values: Iterable[str], codes: Sequence[str]) -> np.ndarray:
    sets = [set(str(v).split(";")) - {""} for v in values]
    return np.array([[c in s for c in codes] for s in sets], dtype=bool).reshape(len(sets), len(codes))


def review_summary(store: pd.DataFrame, codes: Sequence[str], n_boot: int = 2000, seed: int = 0) -> dict:
    """The model against its reviewers.

    An excerpt reviewed by several people counts once, by its latest decision; how
    many such excerpts there are, and on how many the reviewers differ, is under
    ``reviewers``. From the random-sample rows only (an unbiased estimate): exact-match
    accuracy (model code set == reviewer's) with a Wilson 95% interval, and per
    code Cohen's kappa with a bootstrap 95% interval. From all rows: how many
    model codes the reviewers added and removed.
    """
    codes = list(codes)
    disagree = {"excerpts": 0, "differ": 0, "ids": []}
    if {"excerpt_id", "reviewer", "review_date"} <= set(store.columns) and len(store):
        who = store.assign(_r=store["reviewer"].astype(str).map(reviewer_key))
        many = who.groupby("excerpt_id", sort=True).agg(n=("_r", "nunique"), sets=("codes", lambda v: len(set(map(str, v)))))
        many = many[many["n"] > 1]
        differ = many.index[many["sets"] > 1].tolist()
        disagree = {"excerpts": len(many), "differ": len(differ), "ids": differ[:5]}
        store = latest_decisions(store)  # each excerpt counts once, as training takes it (reviewed_as_coded)
    M = _code_matrix(store["model_codes"], codes)
    R = _code_matrix(store["codes"], codes)
    rand = (store["sample"] == "random").to_numpy()
    Mr, Rr = M[rand], R[rand]
    n = int(rand.sum())
    k = int((Mr == Rr).all(axis=1).sum())
    per_code = {}
    for j, c in enumerate(codes):
        lo, hi = bootstrap_kappa(Mr[:, j], Rr[:, j], n_boot, seed + j) if n else (float("nan"), float("nan"))
        both = np.concatenate([Mr[:, j], Rr[:, j]])
        per_code[c] = {"kappa": cohen_kappa(Mr[:, j], Rr[:, j]) if n else float("nan"), "ci_low": lo, "ci_high": hi,
                       "model_yes": int(Mr[:, j].sum()), "reviewer_yes": int(Rr[:, j].sum()),
                       "informative": bool(n and both.min() != both.max())}
    added, removed = R & ~M, M & ~R
    return {
        "random": {"n": n, "exact_match": k, "accuracy": k / n if n else float("nan"),
                   "ci": wilson_interval(k, n), "kappa": per_code},
        "reviewers": disagree,
        "corrections": {"rows": len(store), "rows_changed": int((added | removed).any(axis=1).sum()),
                        "added": int(added.sum()), "removed": int(removed.sum()),
                        "by_code": {c: {"added": int(added[:, j].sum()), "removed": int(removed[:, j].sum())}
                                    for j, c in enumerate(codes)}},
    }


def format_summary(summary: dict) -> str:
    """The summary as a few lines for the terminal."""
    r, c = summary["random"], summary["corrections"]
    lines = []
    if r["n"]:
        lo, hi = r["ci"]
        lines.append(f"random sample: {r['n']} excerpts; the model's codes match the reviewer's exactly in "
                     f"{r['exact_match']} ({r['accuracy']:.0%}, 95% CI {lo:.0%}-{hi:.0%})")
        lines.append("per-code agreement on the random sample (Cohen's kappa, 95% bootstrap CI; model/reviewer yes):")
        for code, k in r["kappa"].items():
            if k["informative"]:
                ci = ("no interval: too few rows" if math.isnan(k["ci_low"])
                      else f"{k['ci_low']:.2f} to {k['ci_high']:.2f}")
                lines.append(f"  {code:<14} {k['kappa']:6.2f}  ({ci})  {k['model_yes']}/{k['reviewer_yes']}")
            else:
                lines.append(f"  {code:<14}    n/a  (all {'yes' if k['model_yes'] else 'no'} from both: "
                             "kappa is not defined)")
        if r["n"] < 30:
            lines.append(f"  (only {r['n']} random rows: the intervals are wide; review more to narrow them)")
    else:
        lines.append("no random-sample rows reviewed yet: accuracy cannot be estimated without bias")
    lines.append(f"corrections in {c['rows']} reviewed excerpts: {c['added']} code(s) added, {c['removed']} removed "
                 f"({c['rows_changed']} excerpts changed)")
    d = summary.get("reviewers") or {}
    if d.get("excerpts"):
        lines.append(f"{d['excerpts']} excerpt(s) reviewed by more than one person, counted once (latest decision); "
                     f"the reviewers differ on {d['differ']}" + (f": {', '.join(d['ids'])}" if d["ids"] else ""))
    return "\n".join(lines)


# --- back to training data ----------------------------------------------------------


def reviewed_as_coded(store_path: str | os.PathLike, codes: Sequence[str]) -> pd.DataFrame:
    """The store as coded excerpts for training: text, codes (list), coder, source, batch, id.

    One row per excerpt: when several reviewers coded it, the latest decision
    (by review date, then reviewer name) is used. Codes must be in ``codes``.
    """
    path = Path(store_path)
    df = read_store(path)
    df = latest_decisions(df)
    known = set(codes)
    sets = []
    for eid, value in zip(df["excerpt_id"], df["codes"]):
        cs = sorted({c.strip() for c in str(value).split(";") if c.strip()})
        bad = [c for c in cs if c not in known]
        if bad:
            raise DiscourseError(f"excerpt {eid}: code(s) {', '.join(bad)} are not in the codebook "
                                 f"(known: {', '.join(codes)})", path)
        sets.append(cs)
    out = pd.DataFrame({"text": df["text"].astype(str).tolist(), "codes": sets,
                        "coder": df["reviewer"].astype(str).tolist(), "source": "reviewed", "batch": "reviewed",
                        "id": df["excerpt_id"].astype(str).tolist()})
    out = out[out["text"].str.strip() != ""]
    return out.sort_values("id", kind="stable").reset_index(drop=True)


def latest_decisions(store: pd.DataFrame) -> pd.DataFrame:
    """One row per excerpt: its latest decision (by review date, then reviewer, matched however typed)."""
    keyed = store.assign(_r=store["reviewer"].astype(str).map(reviewer_key))
    return keyed.sort_values(["excerpt_id", "review_date", "_r"], kind="stable").drop_duplicates(
        "excerpt_id", keep="last").drop(columns="_r")
