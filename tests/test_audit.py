"""The audit loop: selection, the review file a person edits, the reviewed-codes store, retraining."""

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from discourse.audit import (
    default_per_doc_cap, excerpt_context, n_random_for, queue_columns, select_for_review, wrong_probability,
)
from discourse.review_file import check_queue_model, read_review, write_queue
from discourse.review_store import (
    apply_review, format_summary, read_store, review_summary, reviewed_as_coded, wilson_interval,
)
from discourse.errors import DiscourseError

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "corpora" / "demo"
CODES = ["empowered", "consumer", "stakeholder"]
THRESHOLDS = {"empowered": 0.4, "consumer": 0.5, "stakeholder": 0.3}
CODEBOOK = {"name": "test", "codes": [
    {"id": "empowered", "label": "Empowered public", "definition": "Power shifting toward users.",
     "include": ["rights"], "exclude": ["budgets"]},
    {"id": "consumer", "label": "Consuming public", "definition": "Users as customers of a service."},
    {"id": "stakeholder", "label": "Stakeholder public", "definition": "Users as one party among several."},
]}
MODEL_INFO = {"model": "default", "model_sha256": "ab" * 32}
ABOUT = {"model": "default", "model manifest sha256": MODEL_INFO["model_sha256"]}  # a queue made by MODEL_INFO
ROLES = ["nurse", "psychiatrist", "service_user"]


def make_study(n_docs=6, per_doc=30, seed=1, codes=CODES, thresholds=THRESHOLDS):
    """A predictions table, its turns and canonical texts: two turns per question, five excerpts per turn."""
    rng = np.random.default_rng(seed)
    rows, turns, texts = [], [], {}
    for d in range(n_docs):
        doc_id = f"D{d:02d}"
        parts, pos, turn = [], 0, 0
        for k in range(per_doc):
            if k % 5 == 0:  # an interviewer question opens every fifth excerpt's turn
                q = f"Interviewer: What is involvement for, question {k}?\n"
                turns.append({"doc_id": doc_id, "turn": turn, "speaker": "Interviewer", "role": "interviewer",
                              "start": pos + 13, "end": pos + len(q) - 1})
                parts.append(q)
                pos += len(q)
                turn += 1
                label = "R: "
                parts.append(label)
                pos += len(label)
                t_start = pos
            text = f"This is sentence {k} of {doc_id}. It says something about involvement."
            parts.append(text + (" " if k % 5 != 4 else "\n"))
            rows.append({"excerpt_id": f"{doc_id}-{k:03d}", "doc_id": doc_id, "turn": turn, "speaker": "R",
                         "role": ROLES[d % 3], "trust": "AB"[d % 2], "text": text, "start": pos, "end": pos + len(text)})
            pos += len(text) + 1
            if k % 5 == 4:
                turns.append({"doc_id": doc_id, "turn": turn, "speaker": "R", "role": ROLES[d % 3],
                              "start": t_start, "end": pos - 1})
                turn += 1
        texts[doc_id] = "".join(parts)
    pred = pd.DataFrame(rows)
    P = rng.beta(0.4, 0.4, size=(len(pred), len(codes)))
    for j, c in enumerate(codes):
        pred[f"p_{c}"] = P[:, j]
    t = np.array([thresholds[c] for c in codes])
    pred["codes"] = [";".join(c for c, h in zip(codes, row) if h) for row in P >= t]
    return pred, pd.DataFrame(turns), texts


@pytest.fixture
def study():
    return make_study()


def select(study, budget, **kw):
    pred, turns, texts = study
    return select_for_review(pred, turns, texts, CODES, THRESHOLDS, budget, **kw)


# --- selection --------------------------------------------------------------------


def test_budget_respected_and_random_share_marked(study):
    q = select(study, 40)
    assert len(q) == 40 and q.excerpt_id.is_unique
    assert list(q.columns) == queue_columns(CODES)
    assert (q["sample"] == "random").sum() == 4 and (q["sample"] == "uncertain").sum() == 36
    assert (q[CODES] == "").all().all() and (q[["notes", "reviewer"]] == "").all().all()
    assert n_random_for(10, 0.01) == 1 and n_random_for(9, 0.01) == 0 and n_random_for(40, 0.0) == 0
    assert len(select(study, 5000)) == len(study[0])  # a budget above the corpus takes everything
    with pytest.raises(DiscourseError, match="at least 1"):
        select(study, 0)


def test_random_part_is_a_simple_random_sample_of_all_excerpts(study):
    pred = study[0]
    hits = pd.concat([select(study, 20, seed=s).query("sample == 'random'") for s in range(200)])
    assert len(hits) == 400
    # every excerpt is equally likely: each is drawn about 400/180 = 2.2 times, certain or not
    wrong = dict(zip(pred.excerpt_id, wrong_probability(pred[[f"p_{c}" for c in CODES]].to_numpy(),
                                                        np.array([THRESHOLDS[c] for c in CODES]))))
    drawn = hits.excerpt_id.map(wrong)
    assert abs(drawn.mean() - np.mean(list(wrong.values()))) < 0.05
    assert hits.excerpt_id.nunique() > 120


def test_per_document_cap(study):
    q = select(study, 60, per_doc_cap=3)
    unc = q[q["sample"] == "uncertain"]
    assert unc.doc_id.value_counts().max() <= 3
    # default: twice the even share (documents of equal size), at least 2
    q = select(study, 40)
    cap = max(2, math.ceil(2 * 36 / 6))
    assert default_per_doc_cap(36, {d: 30 for d in "abcdef"}) == {d: cap for d in "abcdef"}
    assert q[q["sample"] == "uncertain"].doc_id.value_counts().max() <= cap


def test_one_doubtful_interview_does_not_fill_the_queue(study):
    pred, turns, texts = study
    pred = pred.copy()
    doubtful = pred.doc_id == "D00"
    pred.loc[doubtful, "p_consumer"] = 0.5  # every excerpt of D00 sits on the consumer threshold
    pred.loc[~doubtful, [f"p_{c}" for c in CODES]] = pred.loc[~doubtful, [f"p_{c}" for c in CODES]].clip(0, 0.2) * 0.1
    q = select_for_review(pred, turns, texts, CODES, THRESHOLDS, 20, random_share=0.0)
    assert len(q) == 20
    assert (q.doc_id == "D00").sum() == max(2, math.ceil(2 * 20 / 6))  # capped, the rest spread over others


def test_deterministic_for_a_seed(study):
    a, b = select(study, 30, seed=7), select(study, 30, seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = select(study, 30, seed=8)
    assert set(a.query("sample == 'random'").excerpt_id) != set(c.query("sample == 'random'").excerpt_id)


def test_excerpts_closest_to_a_threshold_come_first(study):
    pred, turns, texts = study
    pred = pred.copy()
    pcols = [f"p_{c}" for c in CODES]
    pred[pcols] = np.where(pred[pcols] > 0.5, 0.99, 0.01)  # everything confident...
    near = ["D00-003", "D01-010", "D02-017", "D03-024", "D04-005"]
    for i, eid in enumerate(near):  # ... except five excerpts, each on one code's threshold
        c = CODES[i % 3]
        pred.loc[pred.excerpt_id == eid, f"p_{c}"] = THRESHOLDS[c] + 0.001
    q = select_for_review(pred, turns, texts, CODES, THRESHOLDS, 12, random_share=0.0)
    assert set(near) <= set(q.excerpt_id)
    # ranking is by the probability that the decision is wrong, on calibrated probabilities
    P = pred[pcols].to_numpy()
    w = wrong_probability(P, np.array([THRESHOLDS[c] for c in CODES]))
    top = set(pred.excerpt_id[np.argsort(-w, kind="stable")[:5]])
    assert top == set(near)


def test_spread_over_roles_and_codes(study):
    pred, turns, texts = study
    q = select_for_review(pred, turns, texts, CODES, THRESHOLDS, 30, random_share=0.0)
    assert set(q.role) == set(ROLES)


def test_already_reviewed_excerpts_are_not_chosen_again(study):
    first = select(study, 30)
    again = select(study, 30, exclude=first.excerpt_id)
    assert not set(again.excerpt_id) & set(first.excerpt_id)  # the random part too: round 2 is measured afresh
    assert (again["sample"] == "random").sum() == (first["sample"] == "random").sum()
    assert select(study, 30, exclude=[]).equals(first)  # nothing excluded: the same draw as before


def test_code_ids_that_are_review_file_columns_are_refused_before_any_review(study):
    pred, turns, texts = study
    renamed = pred.rename(columns={"p_consumer": "p_trust"})
    codes = ["trust" if c == "consumer" else c for c in CODES]
    thresholds = {("trust" if c == "consumer" else c): t for c, t in THRESHOLDS.items()}
    with pytest.raises(DiscourseError, match="code id\\(s\\) trust are also columns of the review file"):
        select_for_review(renamed, turns, texts, codes, thresholds, 10)


def test_xlsx_queue_keeps_text_that_excel_would_mangle(study, tmp_path):
    pred, turns, texts = study
    pred = pred.copy()
    pred.loc[:, "text"] = "= the same, I mean\x0cpage two"
    q = select_for_review(pred, turns, texts, CODES, THRESHOLDS, 5)
    write_queue(q, CODES, tmp_path / "q.xlsx", codebook=CODEBOOK, about={})
    ws = load_workbook(tmp_path / "q.xlsx")["review"]
    col = [c.value for c in ws[1]].index("text") + 1
    assert ws.cell(2, col).value == "= the same, I mean page two" and ws.cell(2, col).data_type == "s"


def test_context_from_the_canonical_text(study):
    pred, turns, texts = study
    q = select(study, 180)
    row = q[q.excerpt_id == "D01-005"].iloc[0]  # opens its turn: the question before it, labelled
    assert row.context_before.startswith("Interviewer: What is involvement for, question 5?")
    assert row.context_after.startswith("This is sentence 6 of D01.")
    row = q[q.excerpt_id == "D01-007"].iloc[0]  # mid-turn: earlier sentences of the same turn
    assert row.context_before.endswith("This is sentence 6 of D01. It says something about involvement.")
    text = texts["D01"]
    assert text[row.start:row.end] == row.text
    # a long turn is cut back to a sentence start
    long = "First sentence here. " * 30 + "The excerpt."
    before, after = excerpt_context(long, len(long) - 12, len(long), None, limit=100)
    assert before.startswith("First sentence here.") and len(before) <= 100 and after == ""


# --- the queue file -----------------------------------------------------------------


def test_xlsx_queue_is_made_for_a_person(study, tmp_path):
    q = select(study, 12)
    path = tmp_path / "queue.xlsx"
    write_queue(q, CODES, path, codebook=CODEBOOK, about={"model": "default"})
    wb = load_workbook(path)
    assert wb.sheetnames == ["review", "instructions"]
    ws = wb["review"]
    header = [c.value for c in ws[1]]
    assert header == queue_columns(CODES)
    assert ws.freeze_panes == "A2"
    col = {h: i for i, h in enumerate(header)}
    assert ws.cell(2, col["text"] + 1).alignment.wrap_text
    assert ws.column_dimensions["K"].width >= 50  # the text column is wide
    dv = ws.data_validations.dataValidation
    assert len(dv) == 1 and dv[0].formula1 == '"yes,no"'
    covered = str(dv[0].sqref)
    from openpyxl.utils import get_column_letter
    for c in CODES:
        assert f"{get_column_letter(col[c] + 1)}2:{get_column_letter(col[c] + 1)}13" in covered
    instructions = "\n".join(str(c.value) for c in wb["instructions"]["A"] if c.value)
    assert "Users as customers of a service." in instructions and "Not this: budgets" in instructions
    assert "blank codes count as no" in instructions
    before = path.read_bytes()
    write_queue(q, CODES, path, codebook=CODEBOOK, about={"model": "default"})
    assert path.read_bytes() == before  # same queue, same bytes


def fill_xlsx(path, answers: dict, reviewer="Ruth", note=None):
    """Edit the queue as a reviewer would: yes/no per code for some rows, a note, a name."""
    wb = load_workbook(path)
    ws = wb["review"]
    header = [c.value for c in ws[1]]
    col = {h: i + 1 for i, h in enumerate(header)}
    for i in range(2, ws.max_row + 1):
        eid = ws.cell(i, col["excerpt_id"]).value
        if eid in answers:
            for c, v in answers[eid].items():
                ws.cell(i, col[c], v)
            if reviewer:
                ws.cell(i, col["reviewer"], reviewer)
            if note and eid == next(iter(answers)):
                ws.cell(i, col["notes"], note)
    wb.save(path)


def test_round_trip_select_review_apply(study, tmp_path):
    q = select(study, 12)
    path = tmp_path / "queue.xlsx"
    write_queue(q, CODES, path, codebook=CODEBOOK)
    ids = q.excerpt_id.tolist()
    answers = {ids[0]: {"consumer": "yes"}, ids[1]: {"empowered": "Y", "consumer": "no", "stakeholder": 1},
               ids[2]: {"empowered": "no"}}
    fill_xlsx(path, answers, note="customer framing, clearly")
    reviewed = read_review(path, CODES)
    assert reviewed.attrs["skipped"] == 9
    assert reviewed.set_index("excerpt_id").codes.to_dict() == {ids[0]: "consumer", ids[1]: "empowered;stakeholder",
                                                                ids[2]: ""}
    store = tmp_path / "reviewed.parquet"
    summary = apply_review(reviewed, store, MODEL_INFO, today="2026-03-01", codes=CODES)
    assert summary["new"] == 3 and summary["store_rows"] == 3
    s = read_store(store).set_index("excerpt_id")
    row = s.loc[ids[0]]
    assert row.reviewer == "Ruth" and row.review_date == "2026-03-01" and row.notes == "customer framing, clearly"
    assert row.model == "default" and row.model_sha256 == MODEL_INFO["model_sha256"]
    assert row.model_codes == q.set_index("excerpt_id").model_codes[ids[0]]
    assert row.p_consumer == pytest.approx(q.set_index("excerpt_id").p_consumer[ids[0]], abs=1e-9)
    assert row.text == q.set_index("excerpt_id").text[ids[0]] and row.review_file == "queue.xlsx"
    assert {row["sample"], s.loc[ids[1]]["sample"]} <= {"random", "uncertain"}
    assert int(row.start) == int(q.set_index("excerpt_id").start[ids[0]])
    # applying the same file again adds nothing and keeps the first date
    again = apply_review(read_review(path, CODES), store, MODEL_INFO, today="2026-03-02", codes=CODES)
    assert again["unchanged"] == 3 and again["store_rows"] == 3
    assert set(read_store(store).review_date) == {"2026-03-01"}
    # a changed decision replaces the old one (the later decision wins); another reviewer adds rows
    fill_xlsx(path, {ids[0]: {"consumer": "no"}})
    later = apply_review(read_review(path, CODES), store, MODEL_INFO, today="2026-03-03", codes=CODES)
    assert later["updated"] == 1 and later["store_rows"] == 3
    fill_xlsx(path, {ids[0]: {"consumer": "no"}}, reviewer=" ruth")  # the same reviewer, typed another way
    assert apply_review(read_review(path, CODES), store, MODEL_INFO, today="2026-03-03", codes=CODES)["store_rows"] == 3
    fill_xlsx(path, answers, reviewer="Sam")
    other = apply_review(read_review(path, CODES), store, MODEL_INFO, today="2026-03-04", codes=CODES)
    assert other["new"] == 3 and other["store_rows"] == 6
    # an excerpt two people reviewed counts once (the latest decision); where they differ is said
    assert other["corrections"]["rows"] == 3
    assert other["reviewers"] == {"excerpts": 3, "differ": 1, "ids": [ids[0]]}
    assert f"the reviewers differ on 1: {ids[0]}" in format_summary(other)
    coded = reviewed_as_coded(store, CODES)
    assert list(coded.columns) == ["text", "codes", "coder", "source", "batch", "id"]
    assert len(coded) == 3 and set(coded.source) == {"reviewed"} and set(coded.batch) == {"reviewed"}
    latest = coded.set_index("id")
    assert latest.codes[ids[0]] == ["consumer"] and latest.coder[ids[0]] == "Sam"  # Sam's review is the latest


def test_csv_queue_round_trip(study, tmp_path):
    q = select(study, 10)
    path = tmp_path / "queue.csv"
    write_queue(q, CODES, path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[0, "consumer"], df.loc[0, "reviewer"] = "yes", "Ruth"
    df.loc[1, "empowered"] = "n"
    df.to_csv(path, index=False)
    reviewed = read_review(path, CODES)
    assert len(reviewed) == 2 and set(reviewed.reviewer) == {"Ruth"}  # the one name fills blank reviewer cells
    assert reviewed.codes.tolist() == ["consumer", ""]


def test_csv_queue_carries_the_model_that_made_it(study, tmp_path):
    from discourse.review_page import make_review_server

    q = select(study, 6)
    path = tmp_path / "queue.csv"
    write_queue(q, CODES, path, about={"model": "default", "model manifest sha256": MODEL_INFO["model_sha256"]})
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert set(df.model_sha256) == {MODEL_INFO["model_sha256"]}
    df.loc[0, "consumer"], df.loc[0, "reviewer"] = "yes", "Ruth"
    df.to_csv(path, index=False)
    reviewed = read_review(path, CODES)
    assert reviewed.attrs["about"] == {"model manifest sha256": MODEL_INFO["model_sha256"]}
    assert "model_sha256" not in reviewed.columns  # the store records the model itself
    other = {"model": "mine", "model_sha256": "f" * 64}
    with pytest.raises(DiscourseError, match="give --model the model that made them"):
        check_queue_model(reviewed.attrs["about"], other, "models/mine", path)
    check_queue_model(reviewed.attrs["about"], MODEL_INFO, "models/default", path)  # the right model passes
    with pytest.raises(DiscourseError, match="give --model the model that made them"):  # nor may the page store them
        make_review_server(path, CODES, CODEBOOK, tmp_path / "reviewed.parquet", other, "Ruth")
    assert not (tmp_path / "reviewed.parquet").exists()
    df.loc[1, "model_sha256"] = "f" * 64  # rows pasted from two models' queues
    df.to_csv(path, index=False)
    with pytest.raises(DiscourseError, match="rows from queues of 2 different models"):
        read_review(path, CODES)


def test_a_blank_reviewer_needs_a_name(study, tmp_path):
    q = select(study, 10)
    path = tmp_path / "queue.csv"
    for c in CODES:
        q[c] = "no"
    q.loc[0, "reviewer"], q.loc[1, "reviewer"] = "Ruth", "Sam"
    write_queue(q, CODES, path)
    with pytest.raises(DiscourseError, match=r"row 4, column 'reviewer'.*no reviewer name, and the file names "
                                             r"2 reviewers \(Ruth, Sam\)"):
        read_review(path, CODES)
    assert set(read_review(path, CODES, reviewer="Alex").reviewer) == {"Ruth", "Sam", "Alex"}


# --- bad review files -------------------------------------------------------------------


def test_unknown_answer_names_sheet_row_and_column(study, tmp_path):
    q = select(study, 10)
    path = tmp_path / "queue.xlsx"
    write_queue(q, CODES, path)
    fill_xlsx(path, {q.excerpt_id[0]: {"empowered": "yes"}, q.excerpt_id[3]: {"consumer": "maybe"}})
    with pytest.raises(DiscourseError) as err:
        read_review(path, CODES)
    msg = str(err.value)
    assert "sheet 'review', row 5, column R (consumer)" in msg and "'maybe'" in msg and "queue.xlsx" in msg


def test_unknown_code_column_names_sheet_row_and_column(study, tmp_path):
    q = select(study, 10).rename(columns={"stakeholder": "stakeholders"})
    path = tmp_path / "queue.xlsx"
    write_queue(q, CODES, path)
    with pytest.raises(DiscourseError, match=r"sheet 'review', row 1, column S \(stakeholders\): unknown column"):
        read_review(path, CODES)
    csv = tmp_path / "queue.csv"
    write_queue(q, CODES, csv)
    with pytest.raises(DiscourseError, match=r"row 1, column 'stakeholders': unknown column"):
        read_review(csv, CODES)


def test_other_bad_files(tmp_path):
    with pytest.raises(DiscourseError, match="file not found"):
        read_review(tmp_path / "missing.xlsx", CODES)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(DiscourseError, match="xlsx or .csv"):
        read_review(bad, CODES)
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(b"not a zip file")
    with pytest.raises(DiscourseError, match="cannot read the workbook"):
        read_review(fake, CODES)
    with pytest.raises(DiscourseError, match="a review queue is .xlsx or .csv"):
        write_queue(pd.DataFrame(columns=queue_columns(CODES)), CODES, tmp_path / "q.parquet")


VALUES = st.sampled_from(["", "yes", "no", "Y", "n", "1", "0", "maybe", "1.5", "-1", "nan", "inf", "é", ",", '"',
                          "\n", "random", "uncertain", "D00-001", "consumer;empowered", "xyz"])
HEADER_POOL = queue_columns(CODES) + ["p_other", "other", "", "Unnamed: 3"]
OK = 6  # valid values are repeated so that most rows pass and the fuzzing reaches every check
CELL = {
    **{c: st.sampled_from(["", "yes", "no"] * OK + ["Y", "n", "1", "0", "1.0", "maybe", " YES "]) for c in CODES},
    **{f"p_{c}": st.sampled_from(["0.5"] * OK + ["0", "1", "", "2", "-0.1", "x", "nan", "1e-3"]) for c in CODES},
    "sample": st.sampled_from(["random", "uncertain"] * OK + ["", "other"]),
    "start": st.sampled_from(["12"] * OK + ["0", "3.0", "", "x", "inf", "-1"]),
    "end": st.sampled_from(["40"] * OK + ["5", "", "1e400"]),
    "excerpt_id": st.sampled_from(["a", "b", "c", "d", "e", "f"] * 3 + [""]),
    "model_codes": st.sampled_from(["", "consumer"] * OK + ["consumer;stakeholder", "nope", " ; ", "empowered,consumer"]),
    "reviewer": st.sampled_from(["", "Ruth", "Ruth", "Ruth", "Sam"]),
    "text": st.sampled_from(["We answer to customers."] * OK + ["", " ", "Line one\nline two, \"quoted\""]),
}


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries(CELL), min_size=0, max_size=5),
       drop=st.sampled_from([[]] * 4 + [[c] for c in queue_columns(CODES)]),
       extra=st.sampled_from([[]] * 6 + [["p_other"], ["other"], ["Unnamed: 3"]]))
def test_fuzzed_review_tables_only_raise_discourse_errors(tmp_path, rows, drop, extra):
    df = pd.DataFrame(rows, columns=queue_columns(CODES)).astype(object).fillna("")
    df = df.drop(columns=[c for c in drop if c in df.columns])
    for c in extra:
        df[c] = "x"
    path = tmp_path / "fuzz.csv"
    df.to_csv(path, index=False)
    try:
        out = read_review(path, CODES)
    except DiscourseError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
    else:
        assert set(out.columns) >= {"excerpt_id", "codes", "reviewer"}
        assert out.attrs["skipped"] + len(out) == len(df)
        assert all(set(v.split(";")) - {""} <= set(CODES) for v in out.codes)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(HEADER_POOL), min_size=0, max_size=len(HEADER_POOL)),
       drop_some=st.booleans(),
       cells=st.lists(st.lists(VALUES, min_size=0, max_size=30), min_size=0, max_size=6),
       raw=st.binary(max_size=60))
def test_fuzzed_review_csvs_only_raise_discourse_errors(tmp_path, header, drop_some, cells, raw):
    cols = header if drop_some else list(dict.fromkeys(queue_columns(CODES) + header))
    lines = [",".join(cols)] + [",".join(f'"{v}"' if v in (",", "\n") else v.replace('"', '""') for v in row)
                                for row in cells]
    path = tmp_path / "fuzz.csv"
    for data in ("\n".join(lines).encode("utf-8"), raw):
        path.write_bytes(data)
        try:
            out = read_review(path, CODES)
        except DiscourseError as exc:
            assert str(exc).startswith(str(path))
        else:
            assert set(out.columns) >= {"excerpt_id", "codes", "reviewer"}


# --- statistics ---------------------------------------------------------------------


def test_summary_uses_only_the_random_sample_for_accuracy():
    rows = []
    for i in range(10):  # random sample: the model is right on 8 of 10
        rows.append({"sample": "random", "model_codes": "consumer" if i < 5 else "",
                     "codes": "consumer" if i < 5 or i >= 8 else ""})
    for i in range(20):  # uncertain rows: all wrong, must not affect accuracy
        rows.append({"sample": "uncertain", "model_codes": "empowered", "codes": ""})
    s = review_summary(pd.DataFrame(rows), CODES, n_boot=500)
    r = s["random"]
    assert r["n"] == 10 and r["accuracy"] == pytest.approx(0.8)
    lo, hi = r["ci"]
    assert lo == pytest.approx(0.490, abs=0.002) and hi == pytest.approx(0.943, abs=0.002)
    assert r["kappa"]["consumer"]["kappa"] == pytest.approx(0.6)  # 2x2 table 5,0,2,3: po .8, pe .5
    assert r["kappa"]["consumer"]["ci_low"] <= 0.6 <= r["kappa"]["consumer"]["ci_high"]
    assert not r["kappa"]["stakeholder"]["informative"]  # nobody said yes: kappa is not defined
    text = format_summary(s)
    assert "exactly in 8 (80%, 95% CI 49%-94%)" in text and "stakeholder" in text and "n/a" in text
    c = s["corrections"]
    assert c["added"] == 2 and c["removed"] == 20 and c["rows_changed"] == 22
    assert c["by_code"]["empowered"] == {"added": 0, "removed": 20}
    assert wilson_interval(0, 0) != wilson_interval(0, 0)  # nan when nothing was sampled
    from discourse.review_store import bootstrap_kappa

    lo, hi = bootstrap_kappa(np.array([1, 0, 0]), np.array([1, 0, 0]))  # three excerpts: too few to say
    assert np.isnan(lo) and np.isnan(hi)
    few = review_summary(pd.DataFrame(rows[3:8]), CODES, n_boot=200)  # five rows, two of them consumer
    assert "consumer" in format_summary(few) and "(no interval: too few rows)" in format_summary(few)


def test_reviewed_as_coded_checks_codes(tmp_path):
    store = tmp_path / "reviewed.parquet"
    pd.DataFrame({"excerpt_id": ["a"], "text": ["We are customers."], "codes": ["consumer;unheard"],
                  "reviewer": ["Ruth"], "review_date": ["2026-01-01"], "sample": ["random"]}).to_parquet(store)
    with pytest.raises(DiscourseError, match="excerpt a: code\\(s\\) unheard are not in the codebook"):
        reviewed_as_coded(store, CODES)
    with pytest.raises(DiscourseError, match="file not found"):
        reviewed_as_coded(tmp_path / "none.parquet", CODES)


# --- the command line end to end ------------------------------------------------------------


@pytest.fixture
def audit_cli(run_cli):
    """The CLI with the audit group (added by cli.py; added here too if not yet wired)."""
    from discourse.cli import cli
    from discourse.cli_audit import add_audit_commands

    if "audit" not in cli.commands:
        add_audit_commands(cli)
    return run_cli


def test_cli_select_and_apply_on_a_classify_folder(audit_cli, tmp_path):
    import json

    manifest = json.loads((ROOT / "models" / "default" / "manifest.json").read_text())
    codes, thresholds = manifest["codes"], manifest["thresholds"]
    pred, turns, texts = make_study(codes=codes, thresholds=thresholds)
    out = tmp_path / "out"
    (out / "texts").mkdir(parents=True)
    pred.to_parquet(out / "predictions.parquet")
    turns.to_parquet(out / "turns.parquet")
    for d, t in texts.items():
        (out / "texts" / f"{d}.txt").write_text(t, encoding="utf-8")
    (out / "run.json").write_text(json.dumps({"model": {"folder": "default", "thresholds": thresholds}}))
    queue = tmp_path / "queue.xlsx"
    code, stdout, err = audit_cli("audit", "select", out / "predictions.parquet", "--budget", 15, "--per-doc-cap", 3,
                                  "--seed", 3, "-o", queue)
    assert code == 0, err
    assert "15 excerpts (13 uncertain, 2 random) from 6 documents" in stdout and err == ""
    q = pd.read_excel(queue, dtype=str, keep_default_na=False)
    assert q.query("sample == 'uncertain'").doc_id.value_counts().max() <= 3
    assert q.context_before.str.len().gt(0).all()
    fill_xlsx(queue, {e: {"consumer": "no"} for e in q.excerpt_id[:4]}, reviewer="Ruth")
    store = tmp_path / "store" / "reviewed.parquet"
    code, stdout, err = audit_cli("audit", "apply", queue, "--store", store)
    assert code == 0, err
    assert f"4 reviewed excerpts (4 new, 0 changed, 0 already stored); 11 rows with no answer skipped -> {store}" in stdout
    assert "corrections in 4 reviewed excerpts" in stdout
    # nothing answered: an error for the command, an empty update for the library
    blank = tmp_path / "blank.xlsx"
    write_queue(q.assign(**{c: "" for c in codes}), codes, blank)
    code, _, err = audit_cli("audit", "apply", blank, "--store", store)
    assert code == 2 and "no row has an answer (15 rows with every code blank)" in err
    nothing = apply_review(read_review(blank, codes), store, MODEL_INFO, codes=codes)
    assert nothing["applied"] == 0 and nothing["store_rows"] == 4
    # a queue made from another model's predictions is refused: its answers would be stored under the wrong model
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({**manifest, "created": "another day"}))
    before = store.read_bytes()
    code, stdout, err = audit_cli("audit", "apply", queue, "--store", store, "--model", other)
    assert code == 2 and "give --model the model that made them" in err and "Traceback" not in err
    assert store.read_bytes() == before
    # bad arguments are one-line errors
    code, _, err = audit_cli("audit", "select", out, "--budget", 5, "-o", tmp_path / "q.txt")
    assert code == 2 and "a review queue is .xlsx or .csv" in err


@pytest.mark.slow
def test_cli_select_review_apply_and_retrain(audit_cli, tmp_path, demo_study):
    study = demo_study(["A01", "C06"])
    out = tmp_path / "out"
    code, _, err = audit_cli("classify", "--manifest", study / "manifest.csv", "-o", out)
    assert code == 0, err

    queue = tmp_path / "review" / "queue.xlsx"
    code, stdout, err = audit_cli("audit", "select", out, "--budget", 20, "-o", queue)
    assert code == 0, err
    assert "20 excerpts (18 uncertain, 2 random)" in stdout
    wb = load_workbook(queue)
    assert "Users framed as consumers or customers" in "\n".join(str(c.value) for c in wb["instructions"]["A"] if c.value)
    q = pd.read_excel(queue, dtype=str, keep_default_na=False)
    codes = [c[2:] for c in q.columns if c.startswith("p_")]
    answers, added = {}, 0
    for r in q.itertuples():
        model = set(r.model_codes.split(";")) - {""}
        answers[r.excerpt_id] = {c: "yes" if (c in model) != (c == "consumer" and r.Index < 3) else "no" for c in codes}
        added += r.Index < 3 and "consumer" not in model
    fill_xlsx(queue, answers, reviewer="Ruth", note="reviewed in the test")

    code, stdout, err = audit_cli("audit", "apply", queue)
    assert code == 0, err
    store = queue.parent / "reviewed.parquet"
    assert "20 reviewed excerpts (20 new" in stdout and "random sample: 2 excerpts" in stdout
    assert f"{added} code(s) added, {3 - added} removed (3 excerpts changed)" in stdout
    s = read_store(store)
    assert len(s) == 20 and set(s.reviewer) == {"Ruth"} and set(s.model) == {"default"}
    assert s.model_sha256.str.len().eq(64).all()
    code, stdout, err = audit_cli("audit", "apply", queue)
    assert code == 0 and "20 already stored" in stdout and len(read_store(store)) == 20

    bad = tmp_path / "review" / "bad.xlsx"
    shutil.copy(queue, bad)
    fill_xlsx(bad, {q.excerpt_id[0]: {"consumer": "perhaps"}})
    code, _, err = audit_cli("audit", "apply", bad)
    assert code == 2 and "sheet 'review', row 2, column" in err and "'perhaps'" in err

    model = tmp_path / "retrained"  # TF-IDF features: the reviewed rows' path into training, without the encoder's minutes
    code, stdout, err = audit_cli("train", ROOT / "corpora" / "training" / "train.csv", "--include-reviewed", store,
                                  "-o", model, "--features", "tfidf")
    assert code == 0, err
    assert "(20 reviewed)" in stdout
    import json
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["training_data"]["reviewed_rows"] == 20
    cv = manifest["cross_validation"]  # the stricter figure leads what train prints; the usual one follows
    assert f"cross-validated macro-F1 {cv['nested']['macro_f1']:.3f}" in stdout
    assert f"{cv['macro_f1']:.3f} with thresholds chosen on all folds" in stdout


def test_review_page_stores_decisions_on_localhost_only(study, tmp_path):
    import http.client
    import json
    import threading

    from discourse.review_page import make_review_server

    q = select(study, 8)
    path = tmp_path / "queue.xlsx"
    write_queue(q, CODES, path, codebook=CODEBOOK, about=ABOUT)
    store = tmp_path / "reviewed.parquet"
    server = make_review_server(path, CODES, CODEBOOK, store, MODEL_INFO, "Ruth")
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def call(method, url, body=None, token=server.token, host=f"127.0.0.1:{port}"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Host": host, "Content-Type": "application/json"}
        if token:
            headers["X-Review-Token"] = token
        conn.request(method, url, body=None if body is None else json.dumps(body), headers=headers)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, data

    try:
        status, page = call("GET", "/")
        assert status == 200 and server.token.encode() in page and b"https://" not in page  # works offline
        status, data = call("GET", "/api/queue")
        queue = json.loads(data)
        assert status == 200 and [r["excerpt_id"] for r in queue["rows"]] == q.excerpt_id.tolist()
        assert queue["codes"][1]["definition"] == "Users as customers of a service." and queue["decided"] == {}
        eid = q.excerpt_id[2]
        status, data = call("POST", "/api/decision", {"excerpt_id": eid, "codes": ["consumer"], "notes": "a shop"})
        assert status == 200, data
        s = read_store(store)
        assert s.excerpt_id.tolist() == [eid] and s.codes[0] == "consumer" and s.reviewer[0] == "Ruth"
        assert s.notes[0] == "a shop" and s.model_sha256[0] == MODEL_INFO["model_sha256"]
        status, data = call("POST", "/api/decision", {"excerpt_id": eid, "codes": [], "notes": ""})
        assert status == 200 and read_store(store).codes.tolist() == [""]  # the later decision wins
        assert json.loads(call("GET", "/api/queue")[1])["decided"] == {eid: {"codes": [], "notes": ""}}
        assert call("POST", "/api/decision", {"excerpt_id": eid, "codes": ["nope"]})[0] == 400
        assert call("POST", "/api/decision", {"excerpt_id": "missing", "codes": []})[0] == 400
        assert call("POST", "/api/decision", {"excerpt_id": eid, "codes": []}, token=None)[0] == 403
        assert call("POST", "/api/decision", {"excerpt_id": eid, "codes": []}, token="guess")[0] == 403
        assert call("GET", "/", host="evil.example:80")[0] == 403
        assert len(read_store(store)) == 1
    finally:
        server.shutdown()
        server.server_close()


# --- several writers, names however typed, queues that lost their model, open spreadsheets -------------------


def _serve(server):
    """Start ``server`` in a thread; return call(method, url, body) -> (status, answer as JSON)."""
    import http.client
    import json
    import threading

    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def call(method, url, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request(method, url, body=None if body is None else json.dumps(body),
                     headers={"Host": f"127.0.0.1:{port}", "Content-Type": "application/json",
                              "X-Review-Token": server.token})
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, json.loads(data)

    return call


def test_two_review_pages_on_one_store_keep_every_decision(study, tmp_path):
    import threading

    from discourse.review_page import make_review_server

    q = select(study, 30)
    path = tmp_path / "queue.xlsx"
    write_queue(q, CODES, path, codebook=CODEBOOK, about=ABOUT)
    store = tmp_path / "reviewed.parquet"
    servers = [make_review_server(path, CODES, CODEBOOK, store, MODEL_INFO, name) for name in ("Ruth", "Sam")]
    calls = [_serve(s) for s in servers]
    status = {}

    def review(k, codes):
        status[k] = [calls[k]("POST", "/api/decision", {"excerpt_id": e, "codes": codes, "notes": ""})[0]
                     for e in q.excerpt_id]

    threads = [threading.Thread(target=review, args=(0, ["consumer"])),
               threading.Thread(target=review, args=(1, ["stakeholder", "empowered"]))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    assert status == {0: [200] * 30, 1: [200] * 30}  # both pages were told their decisions were saved...
    s = read_store(store)
    assert s.groupby("reviewer").size().to_dict() == {"Ruth": 30, "Sam": 30}  # ... and they all were
    assert set(s[s.reviewer == "Sam"].codes) == {"empowered;stakeholder"}


def test_concurrent_applies_to_one_store_keep_every_decision(study, tmp_path):
    import threading
    import time

    q = select(study, 15)
    for c in CODES:
        q[c] = "no"
    path = tmp_path / "queue.csv"
    write_queue(q, CODES, path, about=ABOUT)
    store = tmp_path / "reviewed.parquet"
    names = ["Ruth", "Sam", "Alex"]
    errors = []

    def apply_one_by_one(name):
        reviewed = read_review(path, CODES, reviewer=name)
        try:
            for i in range(len(reviewed)):
                apply_review(reviewed.iloc[[i]], store, MODEL_INFO, today="2026-03-01", codes=CODES)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read_meanwhile():  # a review page showing the decisions, training reading the store...
        while any(t.is_alive() for t in threads):
            try:
                read_store(store) if store.exists() else None
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            time.sleep(0.005)

    threads = [threading.Thread(target=apply_one_by_one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    read_meanwhile()
    for t in threads:
        t.join()
    assert errors == []
    s = read_store(store)
    assert s.groupby("reviewer").size().to_dict() == {n: 15 for n in names}


def test_a_store_kept_busy_is_a_one_line_error_and_its_lock_is_private(study, tmp_path, monkeypatch):
    import os
    import stat

    from discourse import review_store

    q = select(study, 6)
    for c in CODES:
        q[c] = "no"
    path = tmp_path / "queue.csv"
    write_queue(q, CODES, path, about=ABOUT)
    reviewed = read_review(path, CODES, reviewer="Ruth")
    store = tmp_path / "reviewed.parquet"
    apply_review(reviewed.iloc[:2], store, MODEL_INFO, codes=CODES)
    lock = review_store.lock_path(store)
    assert lock.name == "reviewed.parquet.lock" and stat.S_IMODE(os.stat(lock).st_mode) == 0o600
    before = store.read_bytes()
    monkeypatch.setattr(review_store, "LOCK_WAIT", 0.2)
    with review_store.store_lock(store), pytest.raises(DiscourseError) as err:  # another writer holds the store
        apply_review(reviewed, store, MODEL_INFO, codes=CODES)
    assert str(err.value).startswith(f"{store}: the store is busy") and "\n" not in str(err.value)
    assert store.read_bytes() == before  # nothing half-written
    assert apply_review(reviewed, store, MODEL_INFO, codes=CODES)["store_rows"] == 6  # free again


def test_a_reviewer_is_one_reviewer_however_the_name_is_typed(study, tmp_path):
    from discourse.review_page import make_review_server
    from discourse.review_store import latest_decisions

    q = select(study, 8)
    for c in CODES:
        q[c] = "no"
    q.loc[0, "reviewer"], q.loc[1, "reviewer"] = "Ruth", " ruth "  # and blank elsewhere: all Ruth's
    path = tmp_path / "queue.csv"
    write_queue(q, CODES, path, about=ABOUT)
    reviewed = read_review(path, CODES)
    assert len(reviewed) == 8 and set(reviewed.reviewer) == {"Ruth"}
    with pytest.raises(DiscourseError, match="is reviewed twice by Ruth"):  # one reviewer, one row per excerpt
        read_review(_twice(q, tmp_path), CODES)

    # Sam decides three excerpts on his page; opened again as "sam  ", it resumes them and keeps his spelling
    store = tmp_path / "reviewed.parquet"
    xlsx = tmp_path / "queue.xlsx"
    write_queue(q, CODES, xlsx, codebook=CODEBOOK, about=ABOUT)
    ids = q.excerpt_id.tolist()
    pages = {}
    try:
        for name in ("Sam", "sam  "):
            pages[name] = make_review_server(xlsx, CODES, CODEBOOK, store, MODEL_INFO, name)
        sam, sam_typed = _serve(pages["Sam"]), _serve(pages["sam  "])
        for e in ids[:3]:
            assert sam("POST", "/api/decision", {"excerpt_id": e, "codes": ["consumer"], "notes": ""})[0] == 200
        assert sorted(sam_typed("GET", "/api/queue")[1]["decided"]) == sorted(ids[:3])
        assert sam_typed("POST", "/api/decision", {"excerpt_id": ids[0], "codes": [], "notes": "no"})[0] == 200
        assert sorted(sam("GET", "/api/queue")[1]["decided"]) == sorted(ids[:3])
    finally:
        for p in pages.values():
            p.shutdown()
            p.server_close()
    s = read_store(store)
    assert len(s) == 3 and set(s.reviewer) == {"Sam"} and s.set_index("excerpt_id").codes[ids[0]] == ""
    # a file typed "SAM " adds nothing new under another name
    q2 = q.assign(reviewer="")
    q2.loc[:2, "consumer"] = "yes"
    write_queue(q2.iloc[:3], CODES, tmp_path / "sam.csv", about=ABOUT)
    out = apply_review(read_review(tmp_path / "sam.csv", CODES, reviewer="SAM "), store, MODEL_INFO, codes=CODES)
    assert out["store_rows"] == 3 and set(read_store(store).reviewer) == {"Sam"}
    # a store written before names were matched this way reads back with one spelling per reviewer
    old = pd.DataFrame({"excerpt_id": ["a", "b", "b"], "text": ["x"] * 3, "codes": ["consumer", "", "empowered"],
                        "reviewer": ["ruth ", "Ruth", "Sam"], "review_date": ["2026-01-01", "2026-01-02", "2026-01-01"],
                        "sample": ["random"] * 3})
    old_path = tmp_path / "old.parquet"
    old.to_parquet(old_path)
    assert read_store(old_path).reviewer.tolist() == ["ruth", "ruth", "Sam"]
    assert latest_decisions(read_store(old_path)).set_index("excerpt_id").reviewer["b"] == "ruth"
    assert set(reviewed_as_coded(old_path, CODES).coder) == {"ruth"}


def _twice(q, tmp_path):
    """A queue in which one excerpt appears twice, typed by "Ruth" and "RUTH"."""
    path = tmp_path / "twice.csv"
    rows = pd.concat([q.iloc[[0]].assign(reviewer="Ruth"), q.iloc[[0]].assign(reviewer="RUTH")])
    write_queue(rows, CODES, path, about=ABOUT)
    return path


def test_which_columns_a_queue_needs(study, tmp_path):
    q = select(study, 6)
    q.loc[0, "consumer"], q.loc[0, "reviewer"] = "yes", "Ruth"
    path = tmp_path / "queue.csv"
    write_queue(q.drop(columns=["context_before", "context_after"]), CODES, path)  # reading aids may go
    assert read_review(path, CODES).codes.tolist() == ["consumer"]
    for col in ("review_id", "speaker", "role", "trust", "p_consumer", "notes", "reviewer", "consumer"):
        write_queue(q.drop(columns=col), CODES, path)  # what the store keeps or the checks need may not
        with pytest.raises(DiscourseError, match=f"no column '{col}'"):
            read_review(path, CODES)
    write_queue(q.assign(my_comments="x"), CODES, path)  # nor may a column be added: what is in it would be lost
    with pytest.raises(DiscourseError, match="unknown column 'my_comments'"):
        read_review(path, CODES)


def test_a_queue_without_fingerprint_must_have_the_models_probabilities(study, tmp_path):
    from discourse.review_file import probability_mismatch, verify_queue_model
    from discourse.review_page import make_review_server

    q = select(study, 6)
    pcols = [f"p_{c}" for c in CODES]
    P = q[pcols].to_numpy(float)
    t = [THRESHOLDS[c] for c in CODES]
    assert probability_mismatch(q, CODES, P, t) is None
    assert probability_mismatch(q, CODES, P + 5e-5, t) is None  # another machine's arithmetic
    assert probability_mismatch(q, CODES, P + 1e-3, t) == \
        f"R001: p_empowered is {q.p_empowered[0]:.6g} in the queue, {P[0, 0] + 1e-3:.6f} from the model"
    rounded = q.assign(**{c: q[c].round(2) for c in pcols})  # a CSV saved as shown, two decimals
    assert probability_mismatch(rounded, CODES, P, t) is None
    assert "p_" in probability_mismatch(rounded, CODES, P + 0.01, t)
    blank = q.astype(object)
    blank.loc[3, "p_consumer"] = ""
    assert probability_mismatch(blank, CODES, P, t).startswith("R004: p_consumer is blank in the queue")
    other = q.copy()
    other.loc[1, "model_codes"] = "" if q.model_codes[1] else "consumer;empowered;stakeholder"
    assert probability_mismatch(other, CODES, P, t).startswith("R002: model_codes is")
    # with its fingerprint a queue needs no model; without, it needs one to be checked against
    verify_queue_model(q, ABOUT, MODEL_INFO, None, tmp_path / "queue.xlsx")
    with pytest.raises(DiscourseError, match="does not say which model made it .*no model was given"):
        verify_queue_model(q, {}, MODEL_INFO, None, tmp_path / "queue.xlsx")
    path = tmp_path / "queue.csv"
    write_queue(q, CODES, path)  # no model_sha256 column
    with pytest.raises(DiscourseError, match=r"queue.csv: the queue does not say which model made it \(no model_sha"):
        make_review_server(path, CODES, CODEBOOK, tmp_path / "reviewed.parquet", MODEL_INFO, "Ruth")
    assert not (tmp_path / "reviewed.parquet").exists()


@pytest.mark.slow
def test_cli_checks_a_queue_that_lost_its_fingerprint_against_the_model(audit_cli, tmp_path):
    import json
    import os

    from discourse.model import DiscourseClassifier

    model_dir = ROOT / "models" / "default"
    model = DiscourseClassifier.load(model_dir)
    texts = ["We treat the people who use our services as customers, and we measure their satisfaction.",
             "Patients should have real power over how the ward is run, not just a say.",
             "Carers, clinicians and commissioners all sit at the table as partners."]
    P = np.round(model.predict_proba(texts), 6)
    pred = pd.DataFrame({"excerpt_id": ["e1", "e2", "e3"], "doc_id": "D1", "start": [0, 100, 200],
                         "end": [90, 180, 280], "text": texts})
    for j, c in enumerate(model.codes):
        pred[f"p_{c}"] = P[:, j]
    q = select_for_review(pred, None, {}, model.codes, dict(zip(model.codes, model.thresholds_)), 3)
    q[model.codes[0]] = "no"
    q["reviewer"] = "Ruth"
    xlsx, csv = tmp_path / "queue.xlsx", tmp_path / "queue.csv"
    write_queue(q, model.codes, xlsx, about={"model": "default"})
    wb = load_workbook(xlsx)
    del wb["instructions"]  # the reviewer deleted the sheet that names the model
    wb.save(xlsx)
    write_queue(q, model.codes, csv)  # a CSV without its model_sha256 column
    other = tmp_path / "other-model"  # the same files, but another model: its calibration differs
    other.mkdir()
    for f in ("estimator.skops", "encoder-adapter.safetensors"):
        os.symlink(model_dir / f, other / f)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["platt"][0] = [manifest["platt"][0][0], manifest["platt"][0][1] + 0.5]
    (other / "manifest.json").write_text(json.dumps(manifest))
    for queue in (xlsx, csv):
        store = tmp_path / f"{queue.suffix[1:]}.parquet"
        code, stdout, err = audit_cli("audit", "apply", queue, "--store", store, "--model", other)
        assert code == 2 and not store.exists() and "Traceback" not in err
        assert "the queue does not say which model made it" in err and f"are not those of {other}" in err
        code, stdout, err = audit_cli("audit", "apply", queue, "--store", store, "--model", model_dir)
        assert code == 0, err
        assert "checking its probabilities against" in err and "3 reviewed excerpts (3 new" in stdout
        assert set(read_store(store).model_sha256) == {hashlib_sha256(model_dir / "manifest.json")}


def hashlib_sha256(path):
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_queue_open_in_a_spreadsheet_is_warned_about(audit_cli, tmp_path):
    import json
    import socket

    from discourse.review_store import model_info

    model_dir = ROOT / "models" / "default"
    codes = json.loads((model_dir / "manifest.json").read_text())["codes"]
    thresholds = json.loads((model_dir / "manifest.json").read_text())["thresholds"]
    pred, turns, texts = make_study(codes=codes, thresholds=thresholds)
    q = select_for_review(pred, turns, texts, codes, thresholds, 6)
    q[codes[0]], q["reviewer"] = "no", "Ruth"
    queue = tmp_path / "queue.xlsx"
    write_queue(q, codes, queue, about={"model manifest sha256": model_info(model_dir)["model_sha256"]})
    (tmp_path / "~$queue.xlsx").write_bytes(b"\x04Ruth" + b" " * 50 + b"\x04\x00R\x00u\x00t\x00h\x00")
    code, stdout, err = audit_cli("audit", "apply", queue)
    assert code == 0 and "6 reviewed excerpts (6 new" in stdout  # applied all the same: the lock may be stale
    assert err.startswith("warning: queue.xlsx looks open in Excel by Ruth (~$queue.xlsx beside it): "
                          "answers not saved there are not applied; save and close it, then apply again")
    with socket.socket() as busy:  # the page warns too (and here cannot listen: it stops after the warning)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = audit_cli("audit", "review", queue, "--reviewer", "Ruth", "--no-browser",
                                 "--port", busy.getsockname()[1])
    assert code == 2 and err.startswith("warning: queue.xlsx looks open in Excel by Ruth") and "cannot listen" in err
    from discourse.review_file import open_elsewhere

    (tmp_path / "~$queue.xlsx").unlink()
    assert open_elsewhere(queue) is None
    (tmp_path / ".~lock.queue.xlsx#").write_text("Ruth,host,...")
    assert open_elsewhere(queue) == "looks open in LibreOffice (.~lock.queue.xlsx# beside it)"
