"""Agreement between two codings of the same excerpts: model vs. gold, or coder vs. coder.

Per code: precision, recall, F1, Cohen's kappa, Krippendorff's alpha, support;
macro and micro F1; bootstrap intervals of F1 and kappa; expected calibration
error and reliability curves for probabilities. All inputs are 0/1 matrices
(excerpts x codes).

One convention for a metric that is not defined: it is NaN, never a stand-in
number. F1 (with precision and recall) is not defined for a code neither coding
used; kappa and alpha are not defined when the two codings are the same
constant (nobody used the code, or both used it on every excerpt). Macro and
mean rows average the codes where the metric is defined.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd


def to_matrix(code_sets: Sequence[Sequence[str]], codes: Sequence[str]) -> np.ndarray:
    """0/1 matrix, one row per excerpt, one column per code."""
    index = {c: j for j, c in enumerate(codes)}
    Y = np.zeros((len(code_sets), len(codes)), dtype=np.int8)
    for i, cs in enumerate(code_sets):
        for c in cs:
            Y[i, index[c]] = 1
    return Y


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary codings; NaN when both are the same constant (kappa is 0/0)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    po = float(np.mean(a == b))
    pa, pb = a.mean(), b.mean()
    pe = float(pa * pb + (1 - pa) * (1 - pb))
    if pe >= 1.0:
        return math.nan
    return (po - pe) / (1 - pe)


def krippendorff_alpha(a: np.ndarray, b: np.ndarray) -> float:
    """Krippendorff's alpha, nominal, two coders, no missing values; NaN when every value is the same."""
    a, b = np.asarray(a, int), np.asarray(b, int)
    n = 2 * len(a)
    n1 = int(a.sum() + b.sum())
    n0 = n - n1
    if n0 == 0 or n1 == 0:
        return math.nan
    d = int(np.sum(a != b))
    return 1.0 - (n - 1) * d / (n0 * n1)


def _prf(t: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1; all NaN when neither coding has a positive, else 0.0 for an empty denominator."""
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    if tp + fp + fn == 0:
        return math.nan, math.nan, math.nan
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def agreement_table(Y_true: np.ndarray, Y_pred: np.ndarray, codes: Sequence[str]) -> pd.DataFrame:
    """Per-code precision, recall, F1, kappa, alpha and support, plus macro and micro rows.

    A metric not defined for a code is NaN; the macro row averages each metric over the codes where it is
    defined (:func:`undefined_codes` names the others).
    """
    T, P = np.asarray(Y_true, bool), np.asarray(Y_pred, bool)
    rows = []
    for j, c in enumerate(codes):
        prec, rec, f1 = _prf(T[:, j], P[:, j])
        rows.append({"code": c, "precision": prec, "recall": rec, "f1": f1,
                     "kappa": cohen_kappa(T[:, j], P[:, j]), "alpha": krippendorff_alpha(T[:, j], P[:, j]),
                     "support": int(T[:, j].sum()), "predicted": int(P[:, j].sum())})
    df = pd.DataFrame(rows)
    macro = {"code": "macro", **{k: float(df[k].mean()) for k in ("precision", "recall", "f1", "kappa", "alpha")},
             "support": int(df.support.sum()), "predicted": int(df.predicted.sum())}
    mp, mr, mf = _prf(T.ravel(), P.ravel())
    micro = {"code": "micro", "precision": mp, "recall": mr, "f1": mf,
             "kappa": cohen_kappa(T.ravel(), P.ravel()), "alpha": krippendorff_alpha(T.ravel(), P.ravel()),
             "support": int(T.sum()), "predicted": int(P.sum())}
    return pd.concat([df, pd.DataFrame([macro, micro])], ignore_index=True)


def _kappa_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa and F1 from counts (arrays of any matching shape), as ``cohen_kappa`` and ``_prf`` (NaN too)."""
    tn = n - tp - fp - fn
    po = (tp + tn) / n
    pa, pb = (tp + fn) / n, (tp + fp) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(pe >= 1.0, np.nan, (po - pe) / (1 - pe))
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return kappa, f1


def undefined_codes(table: pd.DataFrame, columns: Sequence[str] = ("f1", "kappa", "alpha"),
                    skip: Sequence[str] = ("macro", "micro", "mean")) -> list[str]:
    """The codes of a per-code table (rows other than ``skip``) with any of ``columns`` undefined (NaN)."""
    rows = table[~table["code"].isin(skip)]
    return rows.loc[rows[list(columns)].isna().any(axis=1), "code"].tolist()


BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 0
MAX_UNDEFINED_SHARE = 0.05  # more resamples than this with the metric undefined: no interval (NaN)


def _resample_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of ``n`` excerpts is drawn in each of ``n_boot`` seeded resamples (rows sum to ``n``)."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def _row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of each row over its defined (non-NaN) values; NaN for a row with none."""
    defined = ~np.isnan(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, x, 0.0).sum(axis=1) / defined.sum(axis=1)


def _percentile_interval(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column over the resamples (rows) where it is defined.

    A column undefined in more than ``MAX_UNDEFINED_SHARE`` of them gets no interval (NaN): the resamples
    that remain are too selective a sample to bound it.
    """
    q = [(1 - level) / 2, (1 + level) / 2]
    ok = np.isnan(x).mean(axis=0) <= MAX_UNDEFINED_SHARE
    lo, hi = np.full(x.shape[1], np.nan), np.full(x.shape[1], np.nan)
    if ok.any():
        lo[ok], hi[ok] = np.nanquantile(x[:, ok], q, axis=0)
    return lo, hi


def bootstrap_intervals(Y_true: np.ndarray, Y_pred: np.ndarray, codes: Sequence[str],
                        n_boot: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                        seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Percentile intervals of each code's F1 and kappa, and of their macro means, resampling excerpts.

    Each of ``n_boot`` resamples draws as many excerpts as there are, with
    replacement (seeded); the rows match ``agreement_table``'s codes and macro row.
    A resample's macro mean averages the codes defined in it; the quantiles leave
    out resamples where the metric is undefined, and a metric undefined in more
    than ``MAX_UNDEFINED_SHARE`` of them has no interval (NaN).
    Excerpts of one interview are not independent, so treat the intervals as a lower bound on the uncertainty.
    """
    T, P = np.asarray(Y_true, bool), np.asarray(Y_pred, bool)
    n = len(T)
    W = _resample_weights(n, n_boot, seed)
    tp, fp, fn = W @ (T & P), W @ (~T & P), W @ (T & ~P)
    kappa, f1 = _kappa_f1(tp, fp, fn, np.full_like(tp, n))
    kappa = np.column_stack([kappa, _row_mean(kappa)])
    f1 = np.column_stack([f1, _row_mean(f1)])
    (f_lo, f_hi), (k_lo, k_hi) = _percentile_interval(f1, level), _percentile_interval(kappa, level)
    return pd.DataFrame({"code": [*codes, "macro"], "f1_low": f_lo, "f1_high": f_hi,
                         "kappa_low": k_lo, "kappa_high": k_hi})


def without_nan(obj):
    """``obj`` with every NaN float in it (in dicts and lists, at any depth) as None: JSON null, not the invalid NaN."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: without_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [without_nan(v) for v in obj]
    return obj


def excerpt_table(test: pd.DataFrame, P: np.ndarray, thresholds: Sequence[float], codes: Sequence[str],
                  second: pd.DataFrame | None = None, decimals: int = 6) -> pd.DataFrame:
    """One row per test excerpt behind every figure: its row in the test table, id, text, the hand codes,
    the second coder's (when given; blank where not coded), the model's codes and probabilities."""
    assigned = P >= np.asarray(thresholds)
    out = pd.DataFrame({"row": np.asarray(test.index) + 2})
    if "id" in test.columns:
        out["id"] = test["id"].astype(str).to_numpy()
    out["text"] = test["text"].to_numpy()
    out["codes"] = [";".join(cs) for cs in test["codes"]]
    if second is not None:
        theirs = dict(zip(second.index, second["second_codes"]))
        out["second_coded"] = [i in theirs for i in test.index]
        out["second_codes"] = [";".join(theirs.get(i, [])) for i in test.index]
    out["model_codes"] = [";".join(c for c, a in zip(codes, row) if a) for row in assigned]
    for j, c in enumerate(codes):
        out[f"p_{c}"] = np.round(P[:, j], decimals)
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins over all (excerpt, code) probabilities pooled."""
    y, p = np.asarray(y, float).ravel(), np.asarray(p, float).ravel()
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(ece)


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability vs. observed frequency per bin (for the diagram)."""
    y, p = np.asarray(y, float).ravel(), np.asarray(p, float).ravel()
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "n": int(m.sum()),
                     "mean_p": float(p[m].mean()) if m.any() else np.nan,
                     "observed": float(y[m].mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def plot_reliability(y: np.ndarray, p: np.ndarray, path, title: str = "Reliability") -> None:
    """Save a reliability diagram (PNG) with matplotlib, deterministically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = reliability_curve(y, p).dropna()
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="perfect calibration")
    ax.plot(curve.mean_p, curve.observed, marker="o", color="#1f5f8b", label="model")
    for r in curve.itertuples():
        ax.annotate(str(r.n), (r.mean_p, r.observed), textcoords="offset points", xytext=(4, -10), fontsize=7, color="#555")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed share coded")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}\nECE = {expected_calibration_error(y, p):.3f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    from .tables import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


CEILING_MARGIN = 0.05


def ceiling_table(Y_first: np.ndarray, Y_second: np.ndarray, Y_model: np.ndarray, codes: Sequence[str],
                  margin: float = CEILING_MARGIN, n_boot: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                  seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """The model's agreement with a first coder beside a second coder's, on the same excerpts.

    Per code: the two coders' kappa (the human ceiling), the model's kappa with
    the first coder, the gap (model minus human) with a paired percentile
    bootstrap interval (both kappas on the same resamples), the target
    (human kappa less ``margin``) and whether the model meets it. A code is not
    assessable when either kappa is undefined (say, neither coder used it): its
    gap and ``met`` are empty (NaN, ``<NA>``). The ``mean`` row averages
    the kappas, gap and target over the assessable codes; its ``first_coded`` and
    ``second_coded`` are totals over all codes.
    """
    F, S, M = (np.asarray(Y, bool) for Y in (Y_first, Y_second, Y_model))
    n = len(F)
    human = np.array([cohen_kappa(F[:, j], S[:, j]) for j in range(len(codes))])
    model = np.array([cohen_kappa(F[:, j], M[:, j]) for j in range(len(codes))])
    ok = ~np.isnan(human) & ~np.isnan(model)
    W = _resample_weights(n, n_boot, seed)
    nn = np.full((n_boot, len(codes)), float(n))
    kh, _ = _kappa_f1(W @ (F & S), W @ (~F & S), W @ (F & ~S), nn)
    km, _ = _kappa_f1(W @ (F & M), W @ (~F & M), W @ (F & ~M), nn)
    gap = np.column_stack([km - kh, _row_mean((km - kh)[:, ok])])
    hum = np.column_stack([kh, _row_mean(kh[:, ok])])
    (g_lo, g_hi), (h_lo, h_hi) = _percentile_interval(gap, level), _percentile_interval(hum, level)
    human_all = np.append(human, human[ok].mean() if ok.any() else np.nan)
    model_all = np.append(model, model[ok].mean() if ok.any() else np.nan)
    target = human_all - margin
    met = pd.array([bool(m >= t - 1e-12) if a else pd.NA
                    for m, t, a in zip(model_all, target, [*ok, ok.any()])], dtype="boolean")
    return pd.DataFrame({"code": [*codes, "mean"], "excerpts": n,
                         "first_coded": [*F.sum(axis=0).tolist(), int(F.sum())],
                         "second_coded": [*S.sum(axis=0).tolist(), int(S.sum())],
                         "human_kappa": human_all, "human_kappa_low": h_lo, "human_kappa_high": h_hi,
                         "model_kappa": model_all, "gap": model_all - human_all, "gap_low": g_lo, "gap_high": g_hi,
                         "target": target, "met": met})


def not_assessable(ceiling: pd.DataFrame) -> list[str]:
    """The codes of a ``ceiling_table`` whose model and human kappas cannot be compared (``met`` is empty)."""
    rows = ceiling[ceiling["code"] != "mean"]
    return rows.loc[rows["met"].isna(), "code"].tolist()
