import numpy as np
import pandas as pd
import pytest
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


# --- metrics that are not defined ---------------------------------------------------


def _with_unused_code(n: int = 60, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Two used codes, predicted with some errors, and a third that neither truth nor prediction uses."""
    rng = np.random.default_rng(seed)
    T = np.zeros((n, 3), dtype=int)
    T[:, :2] = rng.random((n, 2)) < 0.3
    P = T.copy()
    P[:, :2] ^= rng.random((n, 2)) < 0.15
    return T, P


def test_undefined_metrics_are_nan_and_left_out_of_the_macro_row():
    T, P = _with_unused_code()
    t = agreement_table(T, P, ["a", "b", "unused"]).set_index("code")
    assert t.loc["unused", ["precision", "recall", "f1", "kappa", "alpha"]].isna().all()  # not 0.0 beside 1.0
    assert t.loc["unused", "support"] == 0 and t.loc["unused", "predicted"] == 0
    for m in ("precision", "recall", "f1", "kappa", "alpha"):
        assert t.loc["macro", m] == t.loc[["a", "b"], m].mean()  # the defined codes only
    assert abs(t.loc["macro", "f1"] - f1_score(T[:, :2], P[:, :2], average="macro")) < 1e-12
    from discourse.evaluate import undefined_codes

    assert undefined_codes(t.reset_index()) == ["unused"]
    assert undefined_codes(agreement_table(T[:, :2], P[:, :2], ["a", "b"])) == []


def test_kappa_and_alpha_are_nan_for_two_equal_constant_codings():
    for v in (0, 1):
        c = np.full(20, v)
        assert np.isnan(cohen_kappa(c, c)) and np.isnan(krippendorff_alpha(c, c))
    assert cohen_kappa(np.zeros(20), np.ones(20)) == 0.0  # constant but different: defined, no agreement
    from discourse.evaluate import _kappa_f1

    k, f = _kappa_f1(np.array([0, 3]), np.array([0, 0]), np.array([0, 0]), 10)
    assert np.isnan(k[0]) and np.isnan(f[0]) and k[1] == 1.0 and f[1] == 1.0


def test_bootstrap_leaves_out_resamples_where_a_metric_is_undefined():
    from discourse.evaluate import _resample_weights, bootstrap_intervals

    n = 15
    T = np.zeros((n, 3), dtype=bool)
    T[:3, 0] = True  # three coded excerpts, perfectly predicted: about 3.5% of resamples draw none of them
    T[:1, 1] = True  # one, perfectly predicted: about 36% of resamples draw none
    T[5:12, 2] = True
    P = T.copy()
    P[5, 2] = False
    W = _resample_weights(n, 2000, 0)
    share = (W[:, :3].sum(axis=1) == 0).mean()
    assert 0.025 < share <= 0.05  # enough to pull a 2.5% quantile down to a stand-in 0.0
    ci = bootstrap_intervals(T, P, ["three", "one", "seven"]).set_index("code")
    assert ci.loc["three", ["f1_low", "f1_high", "kappa_low", "kappa_high"]].tolist() == [1.0] * 4
    assert ci.loc["one"].isna().all()  # no interval, rather than 0.000-1.000
    assert ci.loc["seven"].notna().all() and ci.loc["macro"].notna().all()
    assert ci.loc["seven", "f1_low"] < 1.0 <= ci.loc["macro", "f1_high"] + 1e-12
    from discourse.evaluate import MAX_UNDEFINED_SHARE

    assert share <= MAX_UNDEFINED_SHARE < (W[:, :1].sum(axis=1) == 0).mean()


def test_ceiling_code_neither_coder_used_is_not_assessable():
    T, P = _with_unused_code(400)
    second = T.copy()
    second[:8, :2] ^= 1
    t = ceiling_table(T, second, P, ["a", "b", "unused"]).set_index("code")
    assert np.isnan(t.loc["unused", "human_kappa"]) and np.isnan(t.loc["unused", "gap"])
    assert t.loc["unused", "met"] is pd.NA and t.loc["a", "met"] in (True, False)
    for col in ("human_kappa", "model_kappa", "gap"):
        assert abs(t.loc["mean", col] - t.loc[["a", "b"], col].mean()) < 1e-12  # the assessable codes only
    assert t.loc["mean", "first_coded"] == T.sum() and t.loc["mean", "second_coded"] == second.sum()  # totals
    assert t.loc["mean", ["gap_low", "gap_high", "human_kappa_low", "human_kappa_high"]].notna().all()
    from discourse.evaluate import not_assessable

    assert not_assessable(t.reset_index()) == ["unused"]
    P[0, 2] = 1  # the model used the code once, the coders never: model kappa 0, still not assessable
    t = ceiling_table(T, second, P, ["a", "b", "unused"]).set_index("code")
    assert t.loc["unused", "model_kappa"] == 0.0 and t.loc["unused", "met"] is pd.NA


def test_reports_say_n_a_and_name_the_codes_left_out():
    from discourse.evaluate import bootstrap_intervals
    from discourse.reporting import ceiling_markdown, evaluation_markdown

    T, P = _with_unused_code(400)
    codes = ["a", "b", "unused"]
    table = agreement_table(T, P, codes).merge(bootstrap_intervals(T, P, codes, n_boot=200), on="code", how="left")
    md = evaluation_markdown(table, 0.01, len(T), "m", "test.csv")
    assert "| unused | n/a | n/a | n/a | n/a | n/a | n/a | n/a | 0 | 0 |" in md
    assert "leaving out unused." in md and "| micro |" in md and "|  |" in md  # micro has no interval, as before
    md = ceiling_markdown(ceiling_table(T, T, P, codes, n_boot=200), "second.csv", len(T))
    assert md.rstrip().splitlines()[-2].endswith("| n/a |") and "of 2** codes do" in md
    assert "Not assessable (n/a), and left out of the mean row's kappas: unused" in md


def test_summary_json_has_null_where_a_number_is_undefined():
    import json

    from discourse.evaluate import without_nan

    data = {"macro_f1": float("nan"), "n": 3, "x": [1.5, float("nan")], "inner": {"k": np.float64("nan")}}
    text = json.dumps(without_nan(data))
    assert "NaN" not in text and json.loads(text) == {"macro_f1": None, "n": 3, "x": [1.5, None], "inner": {"k": None}}


@pytest.mark.slow
def test_evaluate_on_excerpts_no_one_coded_writes_empty_cells_and_strict_json(run_cli, tmp_path):
    import json

    texts = ["The bus was late again this morning, so I walked.", "We had soup for lunch and it was cold.",
             "My sister lives in Leeds and works in a bakery.", "The garden needs weeding before the rain comes.",
             "I watched a film about trains last night.", "The car park is being resurfaced next week.",
             "He plays the guitar in a pub band on Fridays.", "The kettle in the kitchen is broken again."]
    ids = [f"t{i}" for i in range(len(texts))]
    pd.DataFrame({"id": ids, "text": texts, "codes": ""}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"id": ids, "codes": ""}).to_csv(tmp_path / "second.csv", index=False)
    code, out, err = run_cli("evaluate", "--test", tmp_path / "test.csv", "--second-coder", tmp_path / "second.csv",
                             "-o", tmp_path / "ev")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "ev" / "evaluation.csv").set_index("code")
    unused = table.index[(table.support == 0) & (table.predicted == 0)].drop(["macro", "micro"], errors="ignore")
    assert len(unused) and table.loc[unused, ["f1", "kappa", "alpha"]].isna().all().all()
    ceiling = pd.read_csv(tmp_path / "ev" / "ceiling.csv").set_index("code")
    assert ceiling.loc[list(unused), "met"].isna().all()  # not True
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert summary["second_coder"]["codes_meeting_ceiling"] == 0
    assert "n/a" in (tmp_path / "ev" / "evaluation.md").read_text()
