"""Discourse profiles: how much each group (role, trust, any metadata) draws on each code.

Prevalence is the share of a group's excerpts drawing on a code, estimated as
the mean calibrated probability (probabilistic classify-and-count, "PCC"),
with the thresholded count beside it. Intervals come from a bootstrap that
resamples speakers within the group (excerpts of one speaker are not
independent), and differences between groups are tested per code by
permuting group labels over speakers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import DiscourseError

ESTIMATOR = "PCC: mean calibrated probability"
PROFILE_COLUMNS = [
    "grouping", "group", "code", "n_documents", "n_speakers", "n_excerpts", "prevalence", "ci_low", "ci_high",
    "estimator", "n_assigned", "share_assigned", "speakers_using", "p_value", "test",
]


def parse_groupings(specs: Sequence[str]) -> list[list[str]]:
    """``["role", "trust,role"]`` -> ``[["role"], ["trust", "role"]]``."""
    out = []
    for spec in specs:
        cols = [c.strip() for c in spec.split(",") if c.strip()]
        if not cols:
            raise DiscourseError(f"empty --by value {spec!r}")
        out.append(cols)
    return out


def with_assigned(pred: pd.DataFrame, codes: Sequence[str]) -> pd.DataFrame:
    """``pred`` plus ``speaker_key`` (doc_id/label) and a boolean ``a_<code>`` per assigned code."""
    df = pred.copy()
    df["speaker_key"] = df["doc_id"].astype(str) + "/" + df["speaker"].astype(str)
    assigned = df["codes"].fillna("").astype(str).str.split(";")
    for c in codes:
        df[f"a_{c}"] = [c in a for a in assigned]
    return df


def _bootstrap_ci(p_sums: np.ndarray, n: np.ndarray, rng: np.random.Generator, reps: int) -> tuple[float, float]:
    k = len(n)
    if k == 0:
        return np.nan, np.nan
    idx = rng.integers(0, k, size=(reps, k))  # drawn even for one speaker, so later groups' draws stay the same
    if k < 2:
        return np.nan, np.nan  # one speaker: resampling speakers says nothing about uncertainty
    stats = p_sums[idx].sum(axis=1) / n[idx].sum(axis=1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def _between_ss(p_sums: np.ndarray, n: np.ndarray, labels: np.ndarray, n_groups: int) -> float:
    """Excerpt-weighted between-group sum of squares of prevalences."""
    tot_p = np.bincount(labels, weights=p_sums, minlength=n_groups)
    tot_n = np.bincount(labels, weights=n, minlength=n_groups)
    overall = p_sums.sum() / n.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        prev = np.where(tot_n > 0, tot_p / tot_n, overall)
    return float(np.sum(tot_n * (prev - overall) ** 2))


def permutation_p(p_sums: np.ndarray, n: np.ndarray, labels: np.ndarray, rng: np.random.Generator, reps: int) -> float:
    """P-value of 'groups differ' by permuting group labels over speakers (all permutations at once)."""
    n_groups = int(labels.max()) + 1
    if n_groups < 2:
        return np.nan
    observed = _between_ss(p_sums, n, labels, n_groups)
    perms = rng.permuted(np.broadcast_to(labels, (reps, len(labels))), axis=1)
    cells = (perms + n_groups * np.arange(reps)[:, None]).ravel()
    tot_p = np.bincount(cells, weights=np.tile(p_sums, reps), minlength=reps * n_groups).reshape(reps, n_groups)
    tot_n = np.bincount(cells, weights=np.tile(n, reps), minlength=reps * n_groups).reshape(reps, n_groups)
    overall = p_sums.sum() / n.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        prev = np.where(tot_n > 0, tot_p / tot_n, overall)
    hits = int(np.sum((tot_n * (prev - overall) ** 2).sum(axis=1) >= observed - 1e-12))
    return (1 + hits) / (1 + reps)


def profile(
    pred: pd.DataFrame,
    codes: Sequence[str],
    by: Sequence[str],
    *,
    reps: int = 1000,
    permutations: int = 2000,
    seed: int = 0,
    exclude_roles: Sequence[str] = ("interviewer",),
) -> pd.DataFrame:
    """The profile of one grouping (a list of columns), one row per group and code."""
    missing = [c for c in by if c not in pred.columns]
    if missing:
        raise DiscourseError(f"no column '{missing[0]}' to group by{_near_column(missing[0], pred.columns)}")
    need = ["excerpt_id", "doc_id", "speaker", "codes"] + [f"p_{c}" for c in codes]
    lacking = [c for c in need if c not in pred.columns]
    if lacking:
        raise DiscourseError(f"not a predictions table: missing {', '.join(lacking)}")
    data = pred[~pred.get("role", pd.Series("", index=pred.index)).isin(exclude_roles)]
    data = data.dropna(subset=[f"p_{c}" for c in codes])
    name = ",".join(by)
    df = with_assigned(data, codes)
    df["_group"] = df[list(by)].astype(str).agg(" / ".join, axis=1)
    # a speaker belongs to one group; if metadata varies within a speaker, each (speaker, group) is a cluster
    df["_cluster"] = df["speaker_key"] + "\x00" + df["_group"]
    agg = {"n": ("excerpt_id", "size"), "group": ("_group", "first"), "doc_id": ("doc_id", "first")}
    for c in codes:
        agg[f"p_{c}"] = (f"p_{c}", "sum")
        agg[f"a_{c}"] = (f"a_{c}", "sum")
    clusters = df.groupby("_cluster", sort=True).agg(**agg)
    groups = sorted(clusters["group"].unique())
    label_of = {g: i for i, g in enumerate(groups)}
    labels = clusters["group"].map(label_of).to_numpy()
    n_docs = df.groupby("_group")["doc_id"].nunique().to_dict()
    rows = []
    for j, c in enumerate(codes):
        rng = np.random.default_rng([seed, j, len(groups)])
        p_sums = clusters[f"p_{c}"].to_numpy(float)
        n = clusters["n"].to_numpy(float)
        p_value = permutation_p(p_sums, n, labels, rng, permutations) if len(groups) > 1 else np.nan
        for g in groups:
            m = labels == label_of[g]
            lo, hi = _bootstrap_ci(p_sums[m], n[m], rng, reps)
            n_exc = int(n[m].sum())
            n_assigned = int(clusters.loc[m, f"a_{c}"].sum())
            rows.append({
                "grouping": name, "group": g, "code": c,
                "n_documents": n_docs[g], "n_speakers": int(m.sum()), "n_excerpts": n_exc,
                "prevalence": float(p_sums[m].sum() / n_exc) if n_exc else np.nan,
                "ci_low": lo, "ci_high": hi, "estimator": ESTIMATOR,
                "n_assigned": n_assigned, "share_assigned": n_assigned / n_exc if n_exc else np.nan,
                "speakers_using": int((clusters.loc[m, f"a_{c}"] > 0).sum()),
                "p_value": p_value,
                "test": f"permutation over speakers ({permutations})" if len(groups) > 1 else "",
            })
    out = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    for col in ("prevalence", "ci_low", "ci_high", "share_assigned", "p_value"):
        out[col] = out[col].round(4)
    return out.sort_values(["grouping", "group", "code"], key=lambda s: s.map({c: i for i, c in enumerate(codes)}) if s.name == "code" else s, kind="stable").reset_index(drop=True)


_NOT_GROUPS = {"excerpt_id", "text", "start", "end", "turn", "codes", "confidence"}


def _near_column(name: str, columns) -> str:
    """'; did you mean 'trust'?' when a column differs only in case or spacing, then the columns one can group by."""
    groupable = [str(c) for c in columns if str(c) not in _NOT_GROUPS and not str(c).startswith("p_")]
    near = [c for c in groupable if c.casefold() == name.strip().casefold()]
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return f"{hint} (columns to group by: {', '.join(groupable)})"


def profiles(pred: pd.DataFrame, codes: Sequence[str], groupings: Sequence[Sequence[str]], **kw) -> dict[str, pd.DataFrame]:
    """Profiles for several groupings, keyed by grouping name (``"trust,role"``)."""
    return {",".join(by): profile(pred, codes, by, **kw) for by in groupings}


PROFILE_FILES = ("profiles.csv", "profiles.xlsx")
_NUMBERS = ["n_documents", "n_speakers", "n_excerpts", "prevalence", "ci_low", "ci_high", "n_assigned",
            "share_assigned", "speakers_using", "p_value"]


def read_profile_file(path: str | Path) -> pd.DataFrame:
    """A table `discourse profile` wrote (CSV, or XLSX with one sheet per grouping) as one table, in file order.

    Groups and codes stay text as written (a group ``NA`` is not a missing value); a file that cannot be read,
    or lacks a profile's columns, is a :class:`DiscourseError`."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".xlsx":
            sheets = pd.read_excel(path, sheet_name=None, dtype=str, keep_default_na=False, engine="openpyxl")
            table = pd.concat(sheets.values(), ignore_index=True) if sheets else pd.DataFrame()
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:  # a damaged or foreign file: pandas, openpyxl and zipfile errors alike
        raise DiscourseError(f"cannot read it as a profile table ({type(exc).__name__})", path) from None
    missing = [c for c in PROFILE_COLUMNS if c not in table.columns]
    if missing:
        raise DiscourseError(f"not a profile table: missing {', '.join(missing)}", path)
    for col in _NUMBERS:
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table[PROFILE_COLUMNS]


def same_profile(written: pd.DataFrame, computed: pd.DataFrame) -> bool:
    """Whether a profile read from a file has the groups, codes and numbers of one computed now."""
    key = ["group", "code"]
    a = written.sort_values(key).reset_index(drop=True)
    b = computed.sort_values(key).reset_index(drop=True)
    if len(a) != len(b) or not (a[key].astype(str).to_numpy() == b[key].astype(str).to_numpy()).all():
        return False
    x, y = a[_NUMBERS].to_numpy(float), b[_NUMBERS].to_numpy(float)
    return bool(np.all(np.isclose(x, y, rtol=0, atol=1e-6) | (np.isnan(x) & np.isnan(y))))
