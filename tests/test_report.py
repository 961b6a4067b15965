"""The HTML report on classify folders made by hand: no excerpts, no codes, one speaker, and the profile files beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discourse.figures import heatmap, prevalence_bars
from discourse.pipeline import model_fingerprint
from discourse.profiles import profiles, read_profile_file
from discourse.report import build_report
from discourse.tables import write_sheets, write_table

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "default"
CODES = ["empowered", "consumer", "stakeholder", "responsible", "therapeutic", "expertise"]
TEXT = "Interviewer: Why?\nR: Users know things we don't. We pay for what works.\n"


def _excerpt(k: int, speaker: str, role: str, trust: str, setting: str, p: float, codes: str) -> dict:
    start = TEXT.index("Users")
    row = {"excerpt_id": f"e{k}", "doc_id": f"D{k % 4}", "turn": 1, "speaker": speaker, "role": role,
           "text": TEXT[start:TEXT.index(".", start) + 1], "start": start, "end": TEXT.index(".", start) + 1,
           "n_sentences": 1, "n_words": 5, "trust": trust, "setting": setting}
    row.update({f"p_{c}": round(p * (j + 1) / len(CODES), 4) for j, c in enumerate(CODES)})
    return row | {"codes": codes, "confidence": 0.9 if k % 3 else 0.6}


def make_folder(out: Path, pred: pd.DataFrame, turns: pd.DataFrame | None = None, skipped=(), documents=()) -> Path:
    """A classify output folder as `discourse classify -o` leaves it, made from the tables given."""
    (out / "texts").mkdir(parents=True)
    for doc in sorted(set(pred["doc_id"]) | set(documents)):
        (out / "texts" / f"{doc}.txt").write_text(TEXT, encoding="utf-8")
    pred.to_parquet(out / "predictions.parquet", index=False)
    if turns is not None:
        turns.to_parquet(out / "turns.parquet", index=False)
    docs = sorted(set(pred["doc_id"]) | set(documents))
    run = {"model": {"folder": "default", "manifest_sha256": model_fingerprint(MODEL), "codes": CODES},
           "segmentation": {"min_words": 3}, "documents": [{"doc_id": d} for d in docs + [s for s, _ in skipped]],
           "skipped": [{"doc_id": d, "reason": r} for d, r in skipped], "counts": {"documents": len(docs)}}
    (out / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return out


def study(n: int = 24, speakers: int = 6) -> pd.DataFrame:
    """Excerpts of ``speakers`` respondents in two roles, two trusts and two settings, some coded."""
    rows = []
    for k in range(n):
        s = k % speakers
        rows.append(_excerpt(k, f"P{s}", "carer" if s % 2 else "nurse", "A" if s < speakers // 2 else "B",
                             "ward" if k % 2 else "community", 0.1 + 0.03 * (k % 7), "consumer" if k % 3 == 0 else ""))
    return pd.DataFrame(rows).assign(doc_id=lambda d: "D" + (d.index % speakers).astype(str))


def no_excerpts() -> pd.DataFrame:
    """An empty predictions table with the columns and types classify writes when nothing is segmented."""
    empty = pd.DataFrame([_excerpt(0, "R", "nurse", "A", "ward", 0.1, "")]).iloc[:0]
    return empty.drop(columns="setting").assign(codes=pd.Series(dtype=float))  # all-missing: stored as numbers


def html_text(path: Path) -> str:
    html = path.read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<svg.*?</svg>", "", html, flags=re.S)))


def report(folder: Path, **kw) -> str:
    return html_text(build_report(folder, MODEL, folder / "report.html", **kw))


# --- nothing to draw --------------------------------------------------------------------------------


def test_a_folder_without_excerpts_says_so_and_why_per_document(tmp_path):
    turns = pd.DataFrame({"doc_id": ["D0", "D0", "D1", "D1"], "turn": [0, 1, 0, 1],
                          "speaker": ["Interviewer", "Interviewer", "Interviewer", "Jo Baker"],
                          "role": ["interviewer", "interviewer", "interviewer", "nurse"], "trust": "A"})
    folder = make_folder(tmp_path / "out", no_excerpts(), turns, skipped=[("D2", "d2.txt: the file is empty")],
                         documents=["D0", "D1"])
    text = report(folder)
    assert "There is nothing to report" in text and "2 documents read" in text
    assert "D0: all 2 turns are interviewer turns (Interviewer)" in text
    assert "D1: 1 respondent turn(s) (Jo Baker) gave no excerpt (an excerpt needs at least 3 words)" in text
    assert "D2: skipped (d2.txt: the file is empty)" in text
    assert "Discourses by speaker role" not in text and "Methods paragraph" not in text and "Model card" in text
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert html.count("<svg") == 1  # the model's calibration only: no empty figure
    assert "Jo Baker" not in report(folder, redact=True) and "(Speaker 1)" in html_text(folder / "report.html")


def test_the_report_command_on_a_folder_without_excerpts_exits_0(run_cli, tmp_path):
    folder = make_folder(tmp_path / "out", no_excerpts(), documents=["D0"])
    code, _, err = run_cli("report", folder)
    assert code == 0 and err == "" and (folder / "report.html").is_file(), err
    assert "D0: no speaker turns were found in it" in html_text(folder / "report.html")


def test_figures_of_an_empty_or_unknown_profile_are_left_out():
    empty = profiles(no_excerpts().assign(codes=""), CODES, [["role"]])["role"]
    assert heatmap(empty, CODES, {}) == "" and prevalence_bars(empty, CODES, {}) == ""
    unknown = pd.DataFrame({"group": ["a"] * len(CODES), "code": CODES, "prevalence": np.nan,
                            "ci_low": np.nan, "ci_high": np.nan})
    assert heatmap(unknown, CODES, {}) == "" and prevalence_bars(unknown, CODES, {}) == ""


@pytest.mark.parametrize("shape", ["no codes", "one speaker"])
def test_excerpts_without_codes_and_a_study_of_one_speaker_render(tmp_path, shape):
    pred = study(12).assign(codes=None) if shape == "no codes" else study(5, speakers=1)
    text = report(make_folder(tmp_path / "out", pred))
    assert "Discourses by speaker role" in text and "Methods paragraph" in text
    if shape == "no codes":
        assert "0 excerpts assigned" in text
    else:
        assert "none: one speaker" in text and "1 speakers" in text


# --- the profile files beside the report ----------------------------------------------------------


def write_profiles(pred: pd.DataFrame, path: Path, groupings: list[list[str]]) -> dict[str, pd.DataFrame]:
    """What `discourse profile --by ... -o path` writes."""
    tables = profiles(pred, CODES, groupings)
    if path.suffix == ".xlsx":
        write_sheets({name.replace(",", " x "): t for name, t in tables.items()}, path)
    else:
        write_table(pd.concat(tables.values(), ignore_index=True), path)
    return tables


def test_the_report_names_the_profile_file_there_and_shows_its_further_groupings(tmp_path):
    pred = study()
    folder = make_folder(tmp_path / "out", pred)
    tables = write_profiles(pred, folder / "profiles.xlsx", [["role"], ["trust"], ["setting"], ["trust", "role"]])
    text = report(folder)
    assert "profiles.csv" not in text
    assert "profiles.xlsx holds the same numbers by role, trust, setting and trust × role." in text
    assert "Discourses by setting" in text and "Discourses by trust × role" in text
    for g in ("setting", "trust,role"):
        for r in tables[g].itertuples():
            assert f"{r.prevalence:.1%}" in text
    written = read_profile_file(folder / "profiles.xlsx")
    assert list(dict.fromkeys(written.grouping)) == ["role", "trust", "setting", "trust,role"]


def test_a_profile_file_that_is_not_these_predictions_is_named_as_such(tmp_path):
    pred = study()
    folder = make_folder(tmp_path / "out", pred)
    table = write_profiles(pred.assign(p_consumer=pred.p_consumer / 2), folder / "profiles.csv", [["role"]])["role"]
    pd.concat([table, table.assign(grouping="gender")]).to_csv(folder / "profiles.csv", index=False)  # no such column
    (folder / "profiles.xlsx").write_bytes(b"not a workbook")
    text = report(folder)
    assert "profiles.csv holds no table shown here. Its tables by role do not match these predictions" in text
    assert "Not shown here: its grouping gender (the predictions have no column gender)" in text
    assert "profiles.xlsx is there but could not be read" in text
    assert "No profile file holds the tables by trust: discourse profile OUTDIR --by role --by trust" in text


def test_without_a_profile_file_the_report_says_how_to_write_one(tmp_path):
    text = report(make_folder(tmp_path / "out", study()))
    assert "profiles.csv" not in text and "profiles.xlsx holds" not in text
    assert "No profile file in this folder holds the tables by role and trust" in text


def test_a_redacted_report_leaves_out_a_grouping_by_speaker(tmp_path):
    pred = study().assign(speaker=lambda d: d.speaker.str.replace("P", "Jo Baker "))
    folder = make_folder(tmp_path / "out", pred)
    write_profiles(pred, folder / "profiles.csv", [["role"], ["trust"], ["speaker"]])
    assert "Discourses by speaker" in report(folder)
    text = report(folder, redact=True)
    assert "Discourses by speaker" not in text.replace("Discourses by speaker role", "") and "Baker" not in text
    assert "Not shown here: its grouping speaker (its groups are speaker labels, and this report is redacted)" in text
