"""The reviewed-codes store: decisions with provenance, the model measured against them, training rows."""

from __future__ import annotations

import hashlib
import math
import os
from datetime import date
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .evaluate import cohen_kappa
from .tables import read_table, write_table

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
    """The reviewed-codes store (Parquet), checked for its key columns."""
    path = Path(store_path)
    if path.suffix.lower() != ".parquet":
        raise DiscourseError("the reviewed-codes store is a .parquet file", path)
    df = read_table(path, required=("excerpt_id", "text", "codes", "reviewer", "review_date", "sample"))
    for col in ("codes", "model_codes"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: ";".join(v) if isinstance(v, (list, tuple, np.ndarray)) else v)
            df[col] = df[col].fillna("").astype(str)
    return df


def _reviewer_key(names: pd.Series) -> pd.Series:
    """One reviewer however the name is typed ("Ruth", "ruth "): one decision per excerpt, one voice."""
    return names.astype(str).str.strip().str.casefold()


def apply_review(reviewed: pd.DataFrame, store_path: str | os.PathLike, model_info: Mapping,
                 today: str | None = None, codes: Sequence[str] | None = None) -> dict:
    """Append reviewed decisions to the store (created if absent); returns ``review_summary`` plus counts.

    Key: excerpt_id + reviewer. A decision already in the store with the same
    codes and notes is kept as it is (its date too); a changed one is replaced
    (the later decision wins). Rows carry the reviewer, today's date, the model
    folder and its manifest sha256, the model's codes and probabilities, the
    excerpt's position and text, the sample type and the review file's name.
    """
    path = Path(store_path)
    codes = list(codes) if codes is not None else [c[2:] for c in reviewed.columns if c.startswith("p_")]
    new = reviewed.copy()
    new["review_date"] = today or date.today().isoformat()
    new["model"] = str(model_info.get("model", ""))
    new["model_sha256"] = str(model_info.get("model_sha256", ""))
    new["review_file"] = reviewed.attrs.get("file", "")
    cols = store_columns(codes)
    for col in cols:
        if col not in new.columns:
            new[col] = np.nan if col.startswith("p_") else ""
    new = new[cols]
    old = read_store(path) if path.exists() else pd.DataFrame(columns=cols)
    for col in cols:
        if col not in old.columns:
            old[col] = np.nan if col.startswith("p_") else ""
    old_cols = cols + [c for c in old.columns if c not in cols]
    old = old[old_cols]
    key = lambda d: d["excerpt_id"].astype(str) + "\x00" + _reviewer_key(d["reviewer"])  # noqa: E731
    old_by_key = dict(zip(key(old), range(len(old))))
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    keep_new = []
    for k, row in zip(key(new), new.itertuples(index=False)):
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
    drop = key(old).isin(set(key(new)))
    store = pd.concat([old[~drop], new], ignore_index=True) if len(old) else new.copy()
    store["start"] = pd.to_numeric(store["start"], errors="coerce").astype("Int64")
    store["end"] = pd.to_numeric(store["end"], errors="coerce").astype("Int64")
    for col in store.columns:
        if col.startswith("p_"):
            store[col] = store[col].astype(float)
        elif col not in ("start", "end"):
            store[col] = store[col].fillna("").astype(str)
    store = store.sort_values(["doc_id", "start", "end", "excerpt_id", "reviewer"], kind="stable").reset_index(drop=True)
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
        who = store.assign(_r=_reviewer_key(store["reviewer"]))
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
    """One row per excerpt: its latest decision (by review date, then reviewer name)."""
    return store.sort_values(["excerpt_id", "review_date", "reviewer"], kind="stable").drop_duplicates(
        "excerpt_id", keep="last")
