"""The arithmetic of scripts/adapt_priors_study.py: draws of a given uncoded share and size, EM against none."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import adapt_priors_study as study  # noqa: E402

CODES = ["a", "b"]


def table(n_uncoded=60, n_coded=40, seed=0):
    rng = np.random.default_rng(seed)
    Y = np.zeros((n_uncoded + n_coded, 2), dtype=int)
    Y[n_uncoded:, 0] = 1
    Y[n_uncoded + n_coded // 2:, 1] = 1
    P = np.clip(0.15 + 0.6 * Y + rng.normal(0, 0.1, Y.shape), 0.01, 0.99)
    return Y, P


def test_metrics_and_the_change_with_em():
    Y, P = table()
    m = study.metrics(Y, P, np.array([0.5, 0.5]), CODES)
    assert m["prevalence error"] == pytest.approx(np.abs(P.mean(0) - Y.mean(0)).mean())
    assert m["macro-F1"] > 0.9
    row = study.compare(Y, P, np.array([0.5, 0.5]), np.array([0.2, 0.2]), CODES)
    for name in study.METRICS:
        assert row[f"{name}, change"] == pytest.approx(row[f"{name}, EM"] - row[name])


def test_resampled_tables_have_the_asked_share_and_are_seeded(monkeypatch):
    Y, P = table()
    seen = []
    real = study.compare
    monkeypatch.setattr(study, "compare", lambda y, p, *a: seen.append(y) or real(y, p, *a))
    first = study.resampled(Y, P, np.array([0.5, 0.5]), np.array([0.3, 0.2]), CODES, 0.75, 40, draws=3, seed=1)
    assert len(seen) == 3 and all(len(y) == 40 and (~y.any(axis=1)).sum() == 30 for y in seen)
    assert study.resampled(Y, P, np.array([0.5, 0.5]), np.array([0.3, 0.2]), CODES, 0.75, 40, draws=3, seed=1) == first
    assert study.resampled(Y, P, np.array([0.5, 0.5]), np.array([0.3, 0.2]), CODES, 0.75, 40, draws=3, seed=2) != first
