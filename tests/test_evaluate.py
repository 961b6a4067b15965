import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score

from discourse.evaluate import (agreement_table, ceiling_table, cohen_kappa, expected_calibration_error, krippendorff_alpha,
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


def test_bootstrap_intervals_bracket_the_estimate_and_narrow_with_more_data():
    from discourse.evaluate import agreement_table, bootstrap_intervals

    rng = np.random.default_rng(1)
    T = rng.random((200, 2)) < 0.3
    P = T ^ (rng.random((200, 2)) < 0.1)  # 10% of decisions flipped
    table = agreement_table(T, P, ["a", "b"]).set_index("code")
    ci = bootstrap_intervals(T, P, ["a", "b"], n_boot=500).set_index("code")
    assert list(ci.index) == ["a", "b", "macro"]
    for c in ["a", "b", "macro"]:
        assert ci.loc[c, "kappa_low"] < table.loc[c, "kappa"] < ci.loc[c, "kappa_high"]
        assert ci.loc[c, "f1_low"] < table.loc[c, "f1"] < ci.loc[c, "f1_high"]
    big = bootstrap_intervals(np.tile(T, (8, 1)), np.tile(P, (8, 1)), ["a", "b"], n_boot=500).set_index("code")
    assert (big.kappa_high - big.kappa_low).mean() < 0.6 * (ci.kappa_high - ci.kappa_low).mean()
    perfect = bootstrap_intervals(T, T, ["a", "b"], n_boot=200)
    assert np.allclose(perfect[["kappa_low", "kappa_high", "f1_low", "f1_high"]], 1.0)
    again = bootstrap_intervals(T, P, ["a", "b"], n_boot=500)
    assert again.equals(bootstrap_intervals(T, P, ["a", "b"], n_boot=500))  # seeded


def test_counts_kappa_matches_cohen_kappa():
    from discourse.evaluate import _kappa_f1

    rng = np.random.default_rng(2)
    for _ in range(20):
        t, p = rng.random(50) < rng.random(), rng.random(50) < rng.random()
        k, f = _kappa_f1(np.sum(t & p), np.sum(~t & p), np.sum(t & ~p), 50)
        assert np.isclose(k, cohen_kappa(t, p)) and np.isclose(f, f1_score(t, p, zero_division=0))


def test_ceiling_table_sets_the_model_beside_the_second_coder():
    rng = np.random.default_rng(3)
    first = (rng.random((400, 2)) < 0.3).astype(int)
    second = np.where(rng.random((400, 2)) < 0.97, first, 1 - first)  # close to the first coder
    model = np.where(rng.random((400, 2)) < 0.85, first, 1 - first)  # further away
    t = ceiling_table(first, second, model, ["x", "y"]).set_index("code")
    for j, c in enumerate(["x", "y"]):
        assert abs(t.loc[c, "human_kappa"] - cohen_kappa(first[:, j], second[:, j])) < 1e-12
        assert abs(t.loc[c, "model_kappa"] - cohen_kappa(first[:, j], model[:, j])) < 1e-12
        assert t.loc[c, "gap_low"] <= t.loc[c, "gap"] <= t.loc[c, "gap_high"] < 0  # clearly below the humans
        assert t.loc[c, "human_kappa_low"] <= t.loc[c, "human_kappa"] <= t.loc[c, "human_kappa_high"]
        assert not t.loc[c, "met"] and abs(t.loc[c, "target"] - (t.loc[c, "human_kappa"] - 0.05)) < 1e-12
        assert t.loc[c, "first_coded"] == first[:, j].sum() and t.loc[c, "second_coded"] == second[:, j].sum()
    assert abs(t.loc["mean", "human_kappa"] - t.loc[["x", "y"], "human_kappa"].mean()) < 1e-12
    assert (t.excerpts == 400).all()

    same = ceiling_table(first, second, second, ["x", "y"]).set_index("code")  # a model that codes as the second coder
    assert same.met.all() and (same.gap == 0).all() and (same.gap_low == 0).all() and (same.gap_high == 0).all()
    assert same.loc["x", "model_kappa"] == same.loc["x", "human_kappa"]
    loose = ceiling_table(first, second, model, ["x", "y"], margin=1.0)
    assert loose.met.all()
