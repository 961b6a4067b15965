"""The command line end to end: real spaCy pipeline, real encoder, the shipped default model."""

import json
import time
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "corpora" / "demo"


@pytest.fixture
def mini_study(demo_study):
    """Three demo documents in three formats (.txt, .vtt, .docx), with their manifest and speaker table."""
    return demo_study(["A01", "B08", "C06"])


def test_segment_writes_excerpts_and_checkable_texts(run_cli, mini_study, tmp_path):
    out = tmp_path / "seg" / "excerpts.csv"
    code, stdout, err = run_cli("segment", mini_study, "--manifest", mini_study / "manifest.csv", "-o", out)
    assert code == 0, err
    ex = pd.read_csv(out, keep_default_na=False)
    assert set(ex.doc_id) == {"A01", "B08", "C06"}
    assert "interviewer" not in set(ex.role) and "unknown" not in set(ex.role)
    for doc_id, sub in ex.groupby("doc_id"):
        text = (out.parent / "texts" / f"{doc_id}.txt").read_text(encoding="utf-8")
        for r in sub.itertuples():
            assert text[r.start:r.end] == r.text
    assert (out.parent / "turns.parquet").exists()


def test_segment_skips_a_document_that_fails_and_keeps_the_others(run_cli, mini_study, tmp_path, break_segment):
    break_segment("B08", KeyError("speaker"))
    out = tmp_path / "seg" / "excerpts.csv"
    code, stdout, err = run_cli("segment", mini_study, "--manifest", mini_study / "manifest.csv", "-o", out)
    assert code == 0, err
    assert set(pd.read_csv(out, keep_default_na=False).doc_id) == {"A01", "C06"}
    assert "skipped B08: B08: internal error: KeyError: 'speaker'" in err and "Traceback" not in err
    assert stdout.startswith("2 documents,") and "(1 skipped)" in stdout
    strict = tmp_path / "strict" / "excerpts.csv"
    code, stdout, err = run_cli("segment", mini_study, "--manifest", mini_study / "manifest.csv", "-o", strict, "--strict")
    assert code != 0 and "B08" in err and len(err.strip().splitlines()) == 1 and not strict.exists()


@pytest.mark.slow
def test_predict_keeps_rows_and_columns(run_cli, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [3, 1, 2], "text": ["We must answer to our customers like any business.", "", "The room was booked."],
                  "note": ["a", "b", "c"]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    code, stdout, err = run_cli("predict", src, "-o", out)
    assert code == 0, err
    assert "1 row(s) with empty text" in err
    df = pd.read_csv(out, keep_default_na=False)
    assert df.id.tolist() == [3, 1, 2] and df.note.tolist() == ["a", "b", "c"]
    codes = ["empowered", "consumer", "stakeholder", "responsible", "therapeutic", "expertise"]
    assert [c for c in df.columns if c.startswith("p_")] == [f"p_{c}" for c in codes]
    assert "consumer" in df.codes[0].split(";")
    assert df.codes[1] == "" and df.p_consumer[1] == ""
    assert df.codes[2] == ""
    assert "replaced" not in err
    assert "Batches" not in err  # no progress bar when stderr is not a terminal (logs, pipes)

    coded = tmp_path / "coded.csv"  # a hand-coded table: its codes column gives way to the model's, with a warning
    pd.DataFrame({"text": ["We must answer to our customers like any business."], "codes": ["stakeholder"]}).to_csv(coded, index=False)
    code, _, err = run_cli("predict", coded, "-o", out)
    assert code == 0 and f"{coded}: column(s) codes replaced by the model's predictions" in err
    assert pd.read_csv(out).codes[0] != "stakeholder"


def test_predict_passes_parquet_columns_through_with_their_types(run_cli, tmp_path):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({  # as polars, R or duckdb write it: nullable integers, decimals, categories, lists
        "id": pa.array([7, None, 123456789012345678], pa.int64()),
        "amount": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("2.25")], pa.decimal128(10, 2)),
        "site": pa.array(["A", "B", "A"]).dictionary_encode(),
        "tags": pa.array([["u", "v"], [], None], pa.list_(pa.string())),
        "text": ["=We must answer to our customers like any business.", "", "The room was booked."],
    })
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    code, _, err = run_cli("predict", src, "-o", tmp_path / "out.parquet")
    assert code == 0, err
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.names[:5] == table.schema.names
    for name in table.schema.names:
        assert out.schema.field(name).type == table.schema.field(name).type, name
        assert out.column(name).to_pylist() == table.column(name).to_pylist(), name
    assert run_cli("predict", src, "-o", tmp_path / "out.csv")[0] == 0
    lines = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith("7,1.50,A,u;v,=We must") and lines[2].startswith(",,B,,,")
    assert lines[3].startswith("123456789012345678,2.25,A,,The room")
    assert run_cli("predict", src, "-o", tmp_path / "out.xlsx")[0] == 0  # text, not a formula, in the sheet
    cell = __import__("openpyxl").load_workbook(tmp_path / "out.xlsx")["Sheet1"]["E2"]
    assert cell.data_type == "s" and cell.value.startswith("=We must answer")

    indexed = tmp_path / "indexed.parquet"  # a named index comes back as a column
    pd.DataFrame({"id": ["x1", "x2"], "text": ["We decide together.", "Nothing."]}).set_index("id").to_parquet(indexed)
    assert run_cli("predict", indexed, "-o", tmp_path / "i.csv")[0] == 0
    assert pd.read_csv(tmp_path / "i.csv").id.tolist() == ["x1", "x2"]


@pytest.mark.slow
def test_predict_adapts_priors_to_the_table_when_asked(run_cli, tmp_path):
    src = tmp_path / "in.csv"
    test = pd.read_csv(ROOT / "corpora" / "test" / "test.csv", keep_default_na=False)
    rows = pd.concat([test[test.codes == ""].head(50), test[test.codes != ""].head(10)])  # mostly uncoded talk
    rows = pd.concat([rows[["id", "text"]], pd.DataFrame({"id": ["blank"], "text": [""]})], ignore_index=True)
    rows.to_csv(src, index=False)
    assert run_cli("predict", src, "-o", tmp_path / "as_trained.csv")[0] == 0
    code, _, err = run_cli("predict", src, "-o", tmp_path / "adapted.csv", "--adapt-priors")
    assert code == 0, err
    line = next(l for l in err.splitlines() if l.startswith("prevalence in this table (EM): "))
    estimate = {c: float(v) for c, v in (part.split() for part in line.split(": ", 1)[1].split(", "))}
    before = pd.read_csv(tmp_path / "as_trained.csv", keep_default_na=False)
    after = pd.read_csv(tmp_path / "adapted.csv", keep_default_na=False)
    assert after.id.tolist() == before.id.tolist() and after.p_consumer.iloc[-1] == "" and after.codes.iloc[-1] == ""
    for c, pi in estimate.items():  # the estimate is the mean adjusted probability over the rows with text
        assert pd.to_numeric(after[f"p_{c}"].iloc[:-1]).mean() == pytest.approx(pi, abs=2e-3)
    # the table is mostly uncoded: below the training data's mix, so probabilities go down, not up
    p_before = before.filter(like="p_").iloc[:-1].apply(pd.to_numeric).to_numpy()
    p_after = after.filter(like="p_").iloc[:-1].apply(pd.to_numeric).to_numpy()
    assert p_after.mean() < p_before.mean()


@pytest.mark.slow
def test_predict_shows_progress_on_a_terminal(run_cli, tmp_path, monkeypatch):
    import sys

    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["Words this test alone encodes, so the bar has work to show."]}).to_csv(src, index=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run_cli("predict", src, "-o", tmp_path / "out.csv")
    assert code == 0 and "Batches" in err


@pytest.mark.slow
def test_evaluate_reports_agreement_with_bootstrap_intervals(run_cli, tmp_path):
    test = tmp_path / "test.csv"
    pd.read_csv(ROOT / "corpora" / "test" / "test.csv", keep_default_na=False).head(40).to_csv(test, index=False)
    ev = tmp_path / "ev"
    code, stdout, err = run_cli("evaluate", "--test", test, "-o", ev)
    assert code == 0, err
    table = pd.read_csv(ev / "evaluation.csv").set_index("code")
    rows = table.drop(index="micro")
    assert (rows.kappa_low <= rows.kappa + 1e-9).all() and (rows.kappa <= rows.kappa_high + 1e-9).all()
    assert (rows.f1_low <= rows.f1 + 1e-9).all() and (rows.f1 <= rows.f1_high + 1e-9).all()
    assert table.loc["micro"].isna()[["kappa_low", "kappa_high"]].all()  # intervals are per code and macro
    md = (ev / "evaluation.md").read_text()
    assert "40 hand-coded excerpts" in md and "| kappa 95% CI |" in md and "bootstrap" in md
    assert re.search(r"\| macro \|.*\| \d\.\d{3}-\d\.\d{3} \|", md)
    assert not (ev / "ceiling.csv").exists() and "second coder" not in md
    from discourse.evaluate import agreement_table, to_matrix

    ex = pd.read_csv(ev / "excerpts.csv", keep_default_na=False, dtype={"id": str})  # the excerpts behind the figures
    src = pd.read_csv(test, keep_default_na=False)
    assert ex.row.tolist() == list(range(2, 42)) and ex.id.tolist() == src.id.tolist() and ex.text.tolist() == src.text.tolist()
    codes = [c for c in (x[2:] for x in ex.columns if x.startswith("p_"))]
    split = lambda col: [[c for c in v.split(";") if c] for v in ex[col]]  # noqa: E731
    again = agreement_table(to_matrix(split("codes"), codes), to_matrix(split("model_codes"), codes), codes)
    assert (again.set_index("code").kappa.round(4).fillna(-9) == table.kappa.fillna(-9)).all()

    second = tmp_path / "second.csv"  # the blind second coding of 30 of those 40 excerpts
    ids = pd.read_csv(test, keep_default_na=False).id.head(30)
    sc = pd.read_csv(ROOT / "corpora" / "src" / "double_coding" / "test_second_coder.csv", keep_default_na=False)
    sc[sc.id.isin(ids)].to_csv(second, index=False)
    code, stdout, err = run_cli("evaluate", "--test", test, "--second-coder", second, "-o", ev)
    assert code == 0, err
    ceiling = pd.read_csv(ev / "ceiling.csv").set_index("code")
    assert (ceiling.excerpts == 30).all() and len(ceiling) == 7
    assert ((ceiling.gap - (ceiling.model_kappa - ceiling.human_kappa)).abs() < 1e-3).all()
    assert (ceiling.met == (ceiling.model_kappa >= ceiling.target - 1e-9)).all()
    md = (ev / "evaluation.md").read_text()
    assert "## Against a second coder" in md and "coded 30 of the 40 excerpts" in md
    ex = pd.read_csv(ev / "excerpts.csv", keep_default_na=False)
    assert ex.second_coded.tolist() == [True] * 30 + [False] * 10 and (ex.second_codes[30:] == "").all()
    summary = json.loads((ev / "summary.json").read_text())["second_coder"]
    assert summary["n"] == 30 and summary["codes_meeting_ceiling"] + len(summary["codes_below_ceiling"]) == 6
    assert run_cli("evaluate", "--test", test, "-o", ev)[0] == 0  # again without: no stale ceiling is left beside it
    assert not (ev / "ceiling.csv").exists() and "second coder" not in (ev / "evaluation.md").read_text()


@pytest.mark.slow
def test_classify_profile_report_resume_and_determinism(run_cli, mini_study, tmp_path):
    out = tmp_path / "run"
    args = ("classify", "--manifest", mini_study / "manifest.csv", "-o", out)
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "3 documents (0 reused)" in stdout
    pred = pd.read_parquet(out / "predictions.parquet")
    assert {"excerpt_id", "doc_id", "speaker", "role", "trust", "start", "end", "codes", "confidence", "p_consumer"} <= set(pred.columns)
    assert pred.excerpt_id.is_unique
    code, stdout, err = run_cli(*args)
    assert "3 documents (3 reused)" in stdout
    pred2 = pd.read_parquet(out / "predictions.parquet")
    pd.testing.assert_frame_equal(pred, pred2)

    outputs = []
    for i in range(2):
        prof = tmp_path / f"profiles{i}.csv"
        assert run_cli("profile", out, "--by", "role", "--by", "trust", "--by", "trust,role", "-o", prof)[0] == 0
        xlsx = tmp_path / f"profiles{i}.xlsx"
        assert run_cli("profile", out, "--by", "role", "--by", "trust", "-o", xlsx)[0] == 0
        html = tmp_path / f"report{i}.html"
        assert run_cli("report", out, "-o", html)[0] == 0
        if i:
            time.sleep(1.1)  # XLSX carries dates: a second later must still give the same bytes
        outputs.append((prof.read_bytes(), xlsx.read_bytes(), html.read_bytes()))
    assert outputs[0] == outputs[1]  # same input, same bytes
    profiles = pd.read_csv(tmp_path / "profiles0.csv")
    assert set(profiles.grouping) == {"role", "trust", "trust,role"}
    sheets = pd.read_excel(tmp_path / "profiles0.xlsx", sheet_name=None)
    assert list(sheets) == ["role", "trust"]
    html = outputs[0][2].decode()
    assert "<svg" in html and not re.search(r"(src|href)=[\"']?(https?:)?//", html)  # nothing fetched from outside
    assert "Methods paragraph" in html and "Model card" in html
    assert "EM prior correction" not in html
    nested = json.loads((ROOT / "models" / "default" / "manifest.json").read_text())["cross_validation"]["nested"]
    assert f"macro-F1 {nested['macro_f1']:.3f}, expected calibration error {nested['ece']:.3f}, each fold scored" in html

    args = (*args, "--adapt-priors")  # the finished documents are reused; the probabilities move to this corpus's mix
    code, stdout, err = run_cli(*args)
    assert code == 0 and "3 documents (3 reused)" in stdout, err
    adapted = pd.read_parquet(out / "predictions.parquet")
    run = json.loads((out / "run.json").read_text())
    assert run["segmentation"]["segmenter"].startswith("segment ")  # the code, spaCy and model versions behind the excerpts
    assert set(run["adapt_priors"]) == set(c[2:] for c in pred.columns if c.startswith("p_"))
    for c, pi in run["adapt_priors"].items():  # the estimate is the mean adjusted probability
        assert 0 < pi < 1 and adapted[f"p_{c}"].mean() == pytest.approx(pi, abs=1e-3)
    assert (adapted.excerpt_id == pred.excerpt_id).all() and not adapted.p_consumer.equals(pred.p_consumer)
    assert run_cli("report", out, "-o", tmp_path / "adapted.html")[0] == 0
    html = (tmp_path / "adapted.html").read_text()
    assert html.count("EM prior correction") == 2  # in the overview and in the methods paragraph


def test_user_errors_are_one_line_with_exit_2(run_cli, tmp_path):
    code, out, err = run_cli("segment", tmp_path / "missing.txt", "-o", tmp_path / "x.csv")
    assert code == 2 and err.strip().startswith("error:") and "missing.txt" in err and len(err.strip().splitlines()) == 1
    man = tmp_path / "manifest.csv"
    man.write_text("doc_id,file,trust\nd1,nothere.txt,A\n", encoding="utf-8")
    code, out, err = run_cli("segment", "--manifest", man, "-o", tmp_path / "x.csv")
    assert code == 2 and "names file 'nothere.txt', which does not exist" in err
    assert not (tmp_path / "x.csv").exists()
    bad = tmp_path / "t.csv"
    bad.write_text("words\nhello\n", encoding="utf-8")
    code, out, err = run_cli("predict", bad, "-o", tmp_path / "p.csv")
    assert code == 2 and "missing column(s) text" in err
    assert not (tmp_path / "p.csv").exists()
