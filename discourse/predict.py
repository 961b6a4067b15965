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
    P = np.round(P, PROBA_DECIMALS)
    out = df.copy()
    for j, col in enumerate(proba_columns(model.codes)):
        out[col] = P[:, j]
    assigned = model.codes_from_proba(np.nan_to_num(P, nan=-1.0))
    out["codes"] = [";".join(cs) for cs in assigned]
    return out, int((~ok).sum())
