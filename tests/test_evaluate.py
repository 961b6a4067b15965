import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score

from discourse.evaluate import (agreement_table, cohen_kappa, expected_calibration_error, krippendorff_alpha,
                                reliability_curve, to_matrix)


def test_kappa_and_f1_match_scikit_learn():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 300)
    b = np.where(rng.random(300) < 0.8, a, 1 - a)
    assert abs(cohen_kappa(a, b) - cohen_kappa_score(a, b)) < 1e-12
    Y = np.column_stack([a, b])
    P = np.column_stack([b, a])
    t = agreement_table(Y, P, ["x", "y"])
    assert abs(t.loc[0, "f1"] - f1_score(a, b)) < 1e-12
    assert abs(t.loc[t.code == "macro", "f1"].iloc[0] - f1_score(Y, P, average="macro")) < 1e-12
    assert abs(t.loc[t.code == "micro", "f1"].iloc[0] - f1_score(Y, P, average="micro")) < 1e-12


def test_krippendorff_alpha_known_values():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1])
    assert krippendorff_alpha(a, a) == 1.0
    # hand computation: n=20 values, 11 zeros, 9 ones, 1 disagreement: 1 - 19*1/(11*9)
    b = a.copy()
    b[2] = 1
    assert abs(krippendorff_alpha(a, b) - (1 - 19 / 99)) < 1e-12


def test_calibration_error_is_zero_for_perfect_bins_and_large_for_overconfidence():
    y = np.array([1] * 30 + [0] * 70)
    assert expected_calibration_error(y, np.full(100, 0.3)) < 1e-12
    assert expected_calibration_error(y, np.full(100, 0.95)) > 0.6
    curve = reliability_curve(y, np.full(100, 0.3))
    assert curve["n"].sum() == 100


def test_to_matrix():
    M = to_matrix([["a"], [], ["b", "a"]], ["a", "b"])
    assert M.tolist() == [[1, 0], [0, 0], [1, 1]]
