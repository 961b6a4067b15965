import time

import numpy as np
import pandas as pd
import pytest

from discourse.errors import DiscourseError
from discourse.profiles import parse_groupings, profile


def fake_predictions(rates: dict[str, float], speakers_per_group=6, excerpts=30, seed=0):
    """Predictions whose code 'x' has a known rate per role; probabilities are well calibrated by construction."""
    rng = np.random.default_rng(seed)
    rows = []
    for role, rate in rates.items():
        for s in range(speakers_per_group):
            for e in range(excerpts):
                p = float(np.clip(rng.normal(rate, 0.05), 0.001, 0.999))
                y = rng.random() < p
                rows.append({"excerpt_id": f"{role}{s}-{e}", "doc_id": f"{role}-{s}", "speaker": "R", "role": role,
                             "trust": "A" if s % 2 else "B", "p_x": p, "codes": "x" if y else ""})
    return pd.DataFrame(rows)


def test_prevalence_interval_and_test_when_groups_differ():
    pred = fake_predictions({"commissioner": 0.30, "psychiatrist": 0.05})
    prof = profile(pred, ["x"], ["role"], reps=500, permutations=500)
    com = prof[prof.group == "commissioner"].iloc[0]
    assert com.n_speakers == 6 and com.n_documents == 6 and com.n_excerpts == 180
    assert com.ci_low < com.prevalence < com.ci_high
    assert com.ci_low < 0.30 < com.ci_high
    assert abs(com.prevalence - 0.30) < 0.03
    assert prof.p_value.iloc[0] < 0.01
    assert com.speakers_using == 6
    assert com.estimator.startswith("PCC")


def test_no_difference_gives_a_large_p_value():
    pred = fake_predictions({"a": 0.2, "b": 0.2})
    prof = profile(pred, ["x"], ["role"], reps=200, permutations=500)
    assert prof.p_value.iloc[0] > 0.05


def test_crossed_groupings_and_determinism():
    pred = fake_predictions({"a": 0.2, "b": 0.1})
    one = profile(pred, ["x"], ["trust", "role"], reps=200, permutations=100)
    two = profile(pred, ["x"], ["trust", "role"], reps=200, permutations=100)
    pd.testing.assert_frame_equal(one, two)
    assert sorted(one.group) == ["A / a", "A / b", "B / a", "B / b"]
    assert parse_groupings(["role", "trust,role"]) == [["role"], ["trust", "role"]]


def test_interval_resamples_speakers_not_excerpts():
    # one speaker with many excerpts all coded, others never: the speaker bootstrap is wide
    rows = [{"excerpt_id": f"s0-{i}", "doc_id": "d0", "speaker": "R", "role": "g", "p_x": 0.9, "codes": "x"} for i in range(100)]
    rows += [{"excerpt_id": f"s{k}-{i}", "doc_id": f"d{k}", "speaker": "R", "role": "g", "p_x": 0.05, "codes": ""}
             for k in range(1, 5) for i in range(25)]
    prof = profile(pd.DataFrame(rows), ["x"], ["role"], reps=1000, permutations=10)
    r = prof.iloc[0]
    assert r.ci_high - r.ci_low > 0.3  # an excerpt bootstrap would give about +-0.06


def test_unknown_grouping_column_is_a_clear_error():
    with pytest.raises(DiscourseError, match="no column 'region' to group by") as err:
        profile(fake_predictions({"a": 0.1}), ["x"], ["region"])
    assert "(columns to group by: doc_id, speaker, role, trust)" in str(err.value) and "p_x" not in str(err.value)
    with pytest.raises(DiscourseError, match="no column 'Trust' to group by; did you mean 'trust'"):
        profile(fake_predictions({"a": 0.1}), ["x"], ["Trust"])


def test_a_group_of_one_speaker_has_no_interval():
    pred = fake_predictions({"a": 0.2, "b": 0.1})
    lone = pred[pred.role == "b"].head(30).assign(role="lone", doc_id="lone-0")  # one speaker
    prof = profile(pd.concat([pred, lone]), ["x"], ["role"], reps=200, permutations=100).set_index("group")
    assert prof.loc["lone", "n_speakers"] == 1 and np.isnan(prof.loc["lone", ["ci_low", "ci_high"]].astype(float)).all()
    assert (prof.loc[["a", "b"], "ci_low"] < prof.loc[["a", "b"], "ci_high"]).all()


def test_profiles_xlsx_sheet_names_are_valid_unique_and_the_bytes_repeat(tmp_path):
    from openpyxl import load_workbook

    from discourse.tables import write_sheets

    t = pd.DataFrame({"group": ["=1+1", "b"], "prevalence": [0.1, 0.2]})
    names = ["role", "trust x organisation_type_and_setting", "trust x organisation_type_and_setting_x", "consented?"]
    write_sheets({n: t for n in names}, tmp_path / "a.xlsx")
    book = load_workbook(tmp_path / "a.xlsx")
    assert book.sheetnames == ["role", "trust x organisation_type_and_s", "trust x organisation_type_ (2)", "consented_"]
    assert book["role"]["A2"].value == "=1+1" and book["role"]["A2"].data_type == "s"
    time.sleep(1.1)  # the workbook's dates must not follow the clock
    write_sheets({n: t for n in names}, tmp_path / "b.xlsx")
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()
