"""Apply a model to a table: probability columns ``p_<code>`` and a ``codes`` column."""

from __future__ import annotations

import numpy as np
import pandas as pd

PROBA_DECIMALS = 6  # fixed rounding keeps outputs byte-identical across runs


def proba_columns(codes: list[str]) -> list[str]:
    return [f"p_{c}" for c in codes]


def predict_table(df: pd.DataFrame, model, embeddings: np.ndarray | None = None,
                  progress: bool = False) -> tuple[pd.DataFrame, int]:
    """``df`` with ``p_<code>`` and ``codes`` (``;``-joined) added; row order and other columns kept.

    Rows whose text is empty or missing get NaN probabilities and no codes;
    the second value returned is how many there were. ``progress`` shows a bar
    on stderr while the texts are encoded.
    """
    text = df["text"].astype("string").fillna("").str.strip()
    ok = (text != "").to_numpy()
    P = np.full((len(df), len(model.codes)), np.nan)
    if ok.any():
        emb = None if embeddings is None else embeddings[ok]
        P[ok] = model.predict_proba(df.loc[ok, "text"].astype(str).tolist(), embeddings=emb, progress=progress)
    return _with_probabilities(df, P, model), int((~ok).sum())


def adapt_table(df: pd.DataFrame, model) -> tuple[pd.DataFrame, dict[str, float]]:
    """``df`` from ``predict_table`` with its probabilities adjusted by EM to the table's own prevalence of
    each code (Saerens et al. 2002) and its codes assigned again; and that estimated prevalence per code.

    Rows without probabilities stay without. The estimate needs a corpus: on sets of a few dozen excerpts
    it is no better than the training data's mix (DESIGN, Statistics).
    """
    from .errors import DiscourseError
    from .model import adapt_priors

    prior = model.info_.get("train_prior")
    if not prior:
        raise DiscourseError("this model does not record its training data's prevalence of each code: retrain it")
    P = np.array(df[proba_columns(model.codes)], dtype=float)  # a copy: to_numpy can be a read-only view
    ok = ~np.isnan(P).any(axis=1)
    if not ok.any():
        return df.copy(), {}
    P[ok], pi = adapt_priors(P[ok], np.array([prior[c] for c in model.codes]))
    return _with_probabilities(df, P, model), {c: round(float(v), 4) for c, v in zip(model.codes, pi)}


def _with_probabilities(df: pd.DataFrame, P: np.ndarray, model) -> pd.DataFrame:
    """``df`` with ``P`` as its ``p_<code>`` columns (rounded) and the codes they assign."""
    P = np.round(P, PROBA_DECIMALS)
    out = df.copy()
    for j, col in enumerate(proba_columns(model.codes)):
        out[col] = P[:, j]
    out["codes"] = [";".join(cs) for cs in model.codes_from_proba(np.nan_to_num(P, nan=-1.0))]
    return out
