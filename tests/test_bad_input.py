"""Bad input: one clear line naming the file, exit status 2, no traceback, no output written."""

import codecs
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "corpora" / "demo"


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def study(tmp_path, files: dict[str, bytes], speakers: str | None = None, manifest: str | None = None):
    d = tmp_path / "study"
    d.mkdir(exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    if manifest is None:
        manifest = "doc_id,file,trust\n" + "".join(f"{Path(n).stem},{n},A\n" for n in files)
    (d / "manifest.csv").write_text(manifest, encoding="utf-8")
    if speakers is not None:
        (d / "speakers.csv").write_text(speakers, encoding="utf-8")
    return d


GOOD = b"Interviewer: What is involvement for?\nR: It is for hearing people who are never heard, really.\n"


@pytest.mark.parametrize("name,data,needle", [
    ("empty.txt", b"", "the file is empty"),
    ("binary.txt", bytes(range(256)) * 4, "binary file"),
    ("latin.txt", "Interviewer: caf\u00e9\nR: na\u00efve\n".encode("utf-8")[:-2] + b"\x81\x8d\x8f\n", "re-save it as UTF-8"),
])
def test_unreadable_transcript_alone_is_an_error(run_cli, tmp_path, name, data, needle):
    out = tmp_path / "out" / "excerpts.csv"
    code, _, err = run_cli("segment", tmp_path / "study" / name if (study(tmp_path, {name: data})) else None, "-o", out, "--strict")
    one_line_error(code, err, name, needle)
    assert not out.exists()


@pytest.mark.parametrize("data", [codecs.BOM_UTF8 + GOOD, codecs.BOM_UTF16_LE + GOOD.decode().encode("utf-16-le"),
                                  codecs.BOM_UTF16_BE + GOOD.decode().encode("utf-16-be")])
def test_bom_encodings_are_decoded(run_cli, tmp_path, data):
    d = study(tmp_path, {"i.txt": data})
    out = tmp_path / "x.csv"
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", out)
    assert code == 0, err
    assert pd.read_csv(out).text.tolist() == ["It is for hearing people who are never heard, really."]


def test_cp1252_is_decoded_with_a_warning(run_cli, tmp_path):
    d = study(tmp_path, {"i.txt": "Interviewer: Why?\nR: It\u2019s the caf\u00e9 group that matters to us.\n".encode("cp1252")})
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    assert code == 0 and "Windows-1252" in err


def test_no_speaker_labels_is_one_unknown_speaker_with_a_warning(run_cli, tmp_path):
    d = study(tmp_path, {"notes.txt": b"We talked about the forum and the survey.\nPeople said it was not listened to.\n"})
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    assert code == 0 and "no speaker labels found" in err
    assert set(pd.read_csv(tmp_path / "x.csv").speaker) == {"unknown"}


def test_manifest_naming_a_missing_file(run_cli, tmp_path):
    d = study(tmp_path, {"a.txt": GOOD}, manifest="doc_id,file,trust\na,a.txt,A\nb,b.txt,B\n")
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    one_line_error(code, err, "manifest.csv", "doc 'b' names file 'b.txt', which does not exist")


def test_duplicate_doc_ids(run_cli, tmp_path):
    d = study(tmp_path, {"a.txt": GOOD}, manifest="doc_id,file,trust\na,a.txt,A\na,a.txt,B\n")
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    one_line_error(code, err, "manifest.csv", "duplicate doc_id 'a'")


def test_speakers_not_in_the_table_are_listed(run_cli, tmp_path):
    d = study(tmp_path, {"a.txt": GOOD + b"Dr Okafor: And I would add that people know things we do not.\n"},
              speakers="doc_id,speaker,role\na,R,commissioner\n")
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    assert code == 0 and "a/Dr Okafor" in err and "role 'unknown'" in err
    assert set(pd.read_csv(tmp_path / "x.csv").role) == {"commissioner", "unknown"}


def test_one_bad_document_is_skipped_unless_strict(run_cli, tmp_path):
    d = study(tmp_path, {"good.txt": GOOD, "bad.txt": b"\x00\x01\x02binary"})
    out = tmp_path / "x.csv"
    code, stdout, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", out)
    assert code == 0 and "skipped bad" in err and "binary" in err and "(1 skipped)" in stdout
    assert set(pd.read_csv(out).doc_id) == {"good"}
    out.unlink()
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", out, "--strict")
    one_line_error(code, err, "bad.txt", "binary")
    assert not out.exists()


def test_oversized_transcript_is_refused_with_the_limit(run_cli, tmp_path):
    big = tmp_path / "study"
    big.mkdir()
    with open(big / "huge.txt", "wb") as fh:
        fh.write(b"R: " + b"and then we talked about the forum. " * (50 * 1024 * 1024 // 36))
    (big / "manifest.csv").write_text("doc_id,file,trust\nhuge,huge.txt,A\n", encoding="utf-8")
    code, _, err = run_cli("segment", "--manifest", big / "manifest.csv", "-o", tmp_path / "x.csv", "--strict")
    one_line_error(code, err, "huge.txt", "transcripts over 20 MB are refused")


@pytest.mark.slow
def test_a_200000_character_turn_is_handled(run_cli, tmp_path):
    sentence = b"We talked about the forum and whether anyone listened to it at all "
    d = study(tmp_path, {"long.txt": b"Interviewer: Go on.\nR: " + sentence * (200_000 // len(sentence)) + b"\n"})
    out = tmp_path / "x.csv"
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", out)
    assert code == 0, err
    ex = pd.read_csv(out)
    assert len(ex) > 100 and ex.n_words.max() <= 120


@pytest.mark.parametrize("yaml_text,needle", [
    ("codes:\n  - id: a\n    definition: x\n  - id: a\n    definition: y\n", "duplicate code id 'a'"),
    ("codes:\n  - id: a\n    label: A\n", "code 'a' has no definition"),
    ("codes:\n  - id: a\n    definition: x\n   - id: b\n", "bad YAML at line 4"),
])
def test_codebook_errors_in_train(run_cli, tmp_path, yaml_text, needle):
    cb = tmp_path / "cb.yaml"
    cb.write_text(yaml_text, encoding="utf-8")
    coded = tmp_path / "coded.csv"
    coded.write_text("text,codes\nhello there,a\n", encoding="utf-8")
    code, _, err = run_cli("train", coded, "--codebook", cb, "-o", tmp_path / "m")
    one_line_error(code, err, "cb.yaml", needle)
    assert not (tmp_path / "m").exists()


def test_training_data_errors(run_cli, tmp_path):
    cb = tmp_path / "cb.yaml"
    cb.write_text("codes:\n  - id: a\n    definition: x\n  - id: b\n    definition: y\n", encoding="utf-8")
    coded = tmp_path / "coded.csv"
    coded.write_text("text,codes\nfirst one,a\nsecond one,zzz\n", encoding="utf-8")
    code, _, err = run_cli("train", coded, "--codebook", cb, "-o", tmp_path / "m")
    one_line_error(code, err, "coded.csv", "row 3", "zzz", "not in the codebook")
    rows = "".join(f"text number {i},a\n" for i in range(20)) + "".join(f"other text {i},b\n" for i in range(3))
    coded.write_text("text,codes\n" + rows, encoding="utf-8")
    code, _, err = run_cli("train", coded, "--codebook", cb, "-o", tmp_path / "m", "--features", "tfidf")
    one_line_error(code, err, "at least 5 coded examples", "b (3)")
    coded.write_text("text,codes\nfine,a\n,b\n", encoding="utf-8")
    code, _, err = run_cli("train", coded, "--codebook", cb, "-o", tmp_path / "m")
    one_line_error(code, err, "coded.csv", "no text", "rows 3")
    assert not (tmp_path / "m").exists()


def test_csv_without_text_column_and_empty_rows(run_cli, tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("id,words\n1,hello\n", encoding="utf-8")
    code, _, err = run_cli("predict", t, "-o", tmp_path / "p.csv")
    one_line_error(code, err, "t.csv", "missing column(s) text")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("sep", [";", "\t", ","])
def test_csv_separated_by_semicolons_or_tabs_is_read(tmp_path, sep):
    from discourse.tables import read_table

    t = tmp_path / "t.csv"  # the text holds the other separators, so only the header can tell
    t.write_text(f"id{sep}text\n1{sep}\"We listen, we act; and\tthen we report.\"\n", encoding="utf-8-sig")
    df = read_table(t, required=("text",))
    assert df.columns.tolist() == ["id", "text"]
    assert df.text.tolist() == ["We listen, we act; and\tthen we report."]


def test_table_not_in_utf8_says_how_to_save_it(run_cli, tmp_path):
    t = tmp_path / "quotes.csv"
    t.write_bytes("id,text\n1,It\u2019s the caf\u00e9 group.\n".encode("cp1252"))
    code, _, err = run_cli("predict", t, "-o", tmp_path / "p.csv")
    one_line_error(code, err, "quotes.csv", "not UTF-8", "CSV UTF-8")
    assert not (tmp_path / "p.csv").exists()


def copy_model(tmp_path) -> Path:
    m = tmp_path / "model"
    shutil.copytree(ROOT / "models" / "default", m)
    return m


@pytest.mark.slow
def test_model_with_another_encoder_is_refused(run_cli, tmp_path):
    m = copy_model(tmp_path)
    man = json.loads((m / "manifest.json").read_text())
    man["encoder"]["id"] = "some-other-encoder-123"
    (m / "manifest.json").write_text(json.dumps(man))
    t = tmp_path / "t.csv"
    t.write_text("text\nhello\n", encoding="utf-8")
    code, _, err = run_cli("predict", t, "--model", m, "-o", tmp_path / "p.csv")
    one_line_error(code, err, "some-other-encoder-123", "retrain")


@pytest.mark.slow
def test_test_data_with_another_codebook_is_refused(run_cli, tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("text,codes\nhello,educational\n", encoding="utf-8")
    code, _, err = run_cli("evaluate", "--test", t, "-o", tmp_path / "ev")
    one_line_error(code, err, "t.csv", "educational", "not in the codebook")


@pytest.mark.slow
def test_second_coding_of_other_excerpts_is_refused(run_cli, tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("id,text,codes\nx1,hello,\n", encoding="utf-8")
    s = tmp_path / "s.csv"
    s.write_text("id,codes\nx2,consumer\n", encoding="utf-8")
    code, _, err = run_cli("evaluate", "--test", t, "--second-coder", s, "-o", tmp_path / "ev")
    one_line_error(code, err, "s.csv", "x2", "not in t.csv")
    assert not (tmp_path / "ev").exists()


def test_tampered_or_unsafe_model_files_are_refused(run_cli, tmp_path):
    import hashlib

    import skops.io as sio

    m = copy_model(tmp_path)
    t = tmp_path / "t.csv"
    t.write_text("text\nhello\n", encoding="utf-8")
    est = m / "estimator.skops"
    data = bytearray(est.read_bytes())
    data[len(data) // 2] ^= 0xFF
    est.write_bytes(bytes(data))
    code, _, err = run_cli("predict", t, "--model", m, "-o", tmp_path / "p.csv")
    one_line_error(code, err, "estimator.skops does not match the sha256")
    # a file with the right hash but a type that is not allowed is refused too
    from fractions import Fraction

    sio.dump({"vectorizer": None, "estimators": [Fraction(1, 3)]}, est)
    man = json.loads((m / "manifest.json").read_text())
    man["files"]["estimator.skops"] = hashlib.sha256(est.read_bytes()).hexdigest()
    (m / "manifest.json").write_text(json.dumps(man))
    code, _, err = run_cli("predict", t, "--model", m, "-o", tmp_path / "p.csv")
    one_line_error(code, err, "types that are not allowed", "fractions.Fraction")
    assert not (tmp_path / "p.csv").exists()


def test_command_line_mistakes_are_one_line_errors_that_point_to_the_help(run_cli, tmp_path):
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    for args, needle, where in [
        (("classify", tmp_path, "-o", a_file), f"Directory '{a_file}' is a file", "discourse classify --help"),
        (("classify", "--bogus"), "No such option '--bogus'", "discourse classify --help"),
        (("nosuch",), "No such command 'nosuch'", "discourse --help"),
    ]:
        code, out, err = run_cli(*args)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert needle in err and f"(see '{where}')" in err and "Usage:" not in err
    code, out, err = run_cli("audit")  # a bare group shows its help, as ever
    assert code == 2 and "Usage: discourse audit" in err and "select" in err


def test_internal_errors_exit_1_with_a_hint(monkeypatch, run_cli, tmp_path):
    import discourse.transcripts as tr

    def boom(*a, **k):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(tr, "read_transcripts", boom)
    monkeypatch.setattr("discourse.study.read_transcripts", boom)
    d = study(tmp_path, {"a.txt": GOOD})
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    assert code == 1 and "internal error" in err and "--debug" in err and "Traceback" not in err
    code, _, err = run_cli("--debug", "segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    assert code == 1 and "Traceback" in err


@pytest.mark.slow
def test_killed_batch_leaves_only_complete_files_and_resumes(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "discourse.cli", "classify", "--manifest", str(DEMO / "manifest.csv"), "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / ".cache" / "docs").glob("*.parquet"))) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list((out / ".cache" / "docs").glob("*.parquet"))
    assert 3 <= len(done) < 27, "the batch finished before it could be interrupted"
    for f in done:
        pd.read_parquet(f)  # every finished file is complete
    assert not (out / "predictions.parquet").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert f"({len(done)} reused)" in r.stdout or f"({len(done) + 1} reused)" in r.stdout
    assert not list(out.rglob(".*.tmp"))
    pred = pd.read_parquet(out / "predictions.parquet")
    assert pred.doc_id.nunique() == 27


@pytest.mark.slow
def test_the_whole_pipeline_makes_no_network_connection(monkeypatch, run_cli, tmp_path, demo_study):
    import socket

    attempts = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))
    d = demo_study(["A02", "BFG"])
    out = tmp_path / "out"
    assert run_cli("classify", "--manifest", d / "manifest.csv", "-o", out)[0] == 0
    assert run_cli("profile", out, "-o", out / "profiles.xlsx")[0] == 0
    assert run_cli("report", out, "--redact")[0] == 0
    code, _, err = run_cli("export-qdpx", out, "--redact", "-o", out / "shared.qdpx")
    assert code == 0, err
    assert attempts == []
    import zipfile

    with zipfile.ZipFile(out / "shared.qdpx") as z:
        exported = " ".join(z.read(n).decode("utf-8") for n in z.namelist())
    html = (out / "report.html").read_text(encoding="utf-8")
    speakers = pd.read_csv(d / "speakers.csv")
    from discourse.redact import Redactor

    names = [s for s in speakers[speakers.doc_id.isin(["A02", "BFG"])].speaker if Redactor.is_name(s)]
    assert len(names) == 5
    for n in names:  # nowhere: not in quotes, nor as the speaker beside them, nor in the project's cases
        for part in n.split():
            assert not re.search(rf"\b{part}\b", html) and not re.search(rf"\b{part}\b", exported), part
    assert "Speaker 5" in html and 'name="BFG/Speaker 5"' in exported


def test_outputs_get_ordinary_permissions(tmp_path):
    from discourse.tables import write_text

    old = os.umask(0o022)
    try:
        write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("text,needles", [
    ("id,text,note,note\n1,a,b,c\n", ["'note' used more than once"]),
    ("id,text\n1,a,stray value\n2,b\n", ["row 2 has 3 fields but the header has 2", "needs quotes"]),
])
def test_tables_that_would_shift_or_rename_columns_are_refused(run_cli, tmp_path, text, needles):
    t = tmp_path / "t.csv"
    t.write_text(text, encoding="utf-8")
    code, _, err = run_cli("predict", t, "-o", tmp_path / "p.csv")
    one_line_error(code, err, "t.csv", *needles)
    assert not (tmp_path / "p.csv").exists()


def test_csv_header_and_trailing_separators_are_read_as_written(tmp_path):
    from discourse.tables import read_table, write_table

    t = tmp_path / "t.csv"  # every row ends in a separator, as some exports write; one header cell is blank
    t.write_text("id,text,\n001,We answer to them.,,\n002,They decide.,x,\n", encoding="utf-8")
    df = read_table(t, required=("text",))
    assert df.columns.tolist() == ["id", "text", ""]
    assert df.values.tolist() == [["001", "We answer to them.", ""], ["002", "They decide.", "x"]]
    write_table(df, tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text(encoding="utf-8") == "id,text,\n001,We answer to them.,\n002,They decide.,x\n"


def test_unwritable_output_is_refused_before_any_work(run_cli, tmp_path, monkeypatch):
    import discourse.cli

    monkeypatch.setattr(discourse.cli, "_load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    t = tmp_path / "t.csv"
    t.write_text("text\nhello there\n", encoding="utf-8")
    code, _, err = run_cli("predict", t, "-o", tmp_path / "p.tsv")
    one_line_error(code, err, "p.tsv", "unknown output type '.tsv'")
    (tmp_path / "a_file").write_text("x")
    code, _, err = run_cli("predict", t, "-o", tmp_path / "a_file" / "p.csv")
    one_line_error(code, err, "is a file, not a folder")
    code, _, err = run_cli("train", t, "-o", tmp_path / "a_file" / "model")
    one_line_error(code, err, "is a file, not a folder")


def test_codes_all_in_one_group_are_refused_before_training(run_cli, tmp_path):
    cb = tmp_path / "cb.yaml"
    cb.write_text("codes:\n  - id: a\n    definition: x\n  - id: b\n    definition: y\n", encoding="utf-8")
    rows = [(f"talk about a number {i}", "a", f"g{i % 3}") for i in range(30)]
    rows += [(f"talk about b number {i}", "b", "g0") for i in range(8)]  # every b is in batch g0
    rows += [(f"plain talk {i}", "", f"g{i % 3}") for i in range(30)]
    coded = tmp_path / "coded.csv"
    pd.DataFrame(rows, columns=["text", "codes", "batch"]).to_csv(coded, index=False)
    code, _, err = run_cli("train", coded, "--codebook", cb, "-o", tmp_path / "m", "--features", "tfidf")
    one_line_error(code, err, "no excerpt coded 'b' to train on when g0 is held out", "--group-by")
    assert not (tmp_path / "m").exists()
    every = tmp_path / "every.csv"  # a code on every excerpt leaves nothing to tell it from
    pd.DataFrame({"text": [f"t {i}" for i in range(20)], "codes": ["a;b" if i < 10 else "a" for i in range(20)]}).to_csv(every, index=False)
    code, _, err = run_cli("train", every, "--codebook", cb, "-o", tmp_path / "m", "--features", "tfidf")
    one_line_error(code, err, "at least 5 excerpts without it", "a (0 without)")


def test_header_only_test_table_is_refused(run_cli, tmp_path):
    t = tmp_path / "test.csv"
    t.write_text("text,codes\n", encoding="utf-8")
    code, _, err = run_cli("evaluate", "--test", t, "-o", tmp_path / "ev")
    one_line_error(code, err, "test.csv", "has no rows")


def test_a_failed_save_leaves_the_old_model_whole(tmp_path, monkeypatch):
    from discourse.errors import DiscourseError
    from discourse.model import DiscourseClassifier, ModelConfig

    texts = [f"we answer to our customers {i}" for i in range(8)] + [f"the room was booked {i}" for i in range(8)]
    model = DiscourseClassifier(["consumer"], encoder=None, config=ModelConfig(features="tfidf"))
    model.fit(texts, [["consumer"]] * 8 + [[]] * 8)
    folder = model.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    model.thresholds_ = [0.01]
    with pytest.raises(DiscourseError, match="SOURCE_DATE_EPOCH"):
        model.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert DiscourseClassifier.load(folder).thresholds_ != [0.01]


@pytest.mark.parametrize("columns,needle", [("role", "column(s) role would clash"), ("p_id", "column(s) p_id would clash"),
                                            ("speaker", "column(s) speaker would clash")])
def test_manifest_columns_that_clash_with_the_tools_own_are_refused(run_cli, tmp_path, columns, needle):
    d = study(tmp_path, {"a.txt": GOOD}, manifest=f"doc_id,file,trust,{columns}\na,a.txt,A,x\n")
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    one_line_error(code, err, "manifest.csv", needle, "rename")


def test_speaker_table_named_but_missing_is_an_error(run_cli, tmp_path):
    d = study(tmp_path, {"a.txt": GOOD})
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "--speakers", d / "speakrs.csv", "-o", tmp_path / "x.csv")
    one_line_error(code, err, "speakrs.csv", "file not found")
    assert not (tmp_path / "x.csv").exists()


def test_speaker_table_roles_and_labels_ignore_case_and_metadata_is_trimmed(run_cli, tmp_path):
    data = b"Int: What is involvement for?\nR: It is for hearing people who are never heard, really.\n"
    d = study(tmp_path, {"a.txt": data}, manifest="doc_id,file,trust,area,gender\na,a.txt,North ,  rural,\n",
              speakers="doc_id,speaker,role\na,Int,Interviewer\na,R,Service_User\n")
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "x.csv")
    assert code == 0, err
    x = pd.read_csv(tmp_path / "x.csv")
    assert x.role.tolist() == ["service_user"]  # the interviewer's turn is not an excerpt
    assert x.trust.tolist() == ["North"] and x.area.tolist() == ["rural"] and x.gender.tolist() == ["unknown"]
    (d / "speakers.csv").write_text("doc_id,speaker,role\na,R,service_user\na,r,carer\n", encoding="utf-8")
    code, _, err = run_cli("segment", "--manifest", d / "manifest.csv", "-o", tmp_path / "y.csv")
    one_line_error(code, err, "speakers.csv", "speaker 'r' of doc 'a' is listed twice")


def test_report_refuses_a_model_that_did_not_make_the_predictions(run_cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    pd.DataFrame({"excerpt_id": ["e1"], "doc_id": ["a"], "speaker": ["R"], "role": ["carer"], "trust": ["A"],
                  "text": ["t"], "start": [0], "end": [1], "p_consumer": [0.5], "codes": [""]}).to_parquet(out / "predictions.parquet")
    (out / "run.json").write_text(json.dumps({"model": {"folder": "mine2", "manifest_sha256": "0123456789abcdef"}}))
    code, _, err = run_cli("report", out)
    one_line_error(code, err, "made by model 'mine2'", "--model")
    assert not (out / "report.html").exists()


def test_a_csv_of_several_documents_is_read_without_a_manifest(run_cli, tmp_path):
    f = tmp_path / "focus.csv"
    f.write_text("doc_id,speaker,text\ng1,Interviewer,What is it for?\ng1,P1,It is for hearing people nobody hears.\n"
                 "g2,Interviewer,And here?\ng2,P2,We decide together with the staff now.\n", encoding="utf-8")
    code, _, err = run_cli("segment", f, "-o", tmp_path / "x.csv")
    assert code == 0, err
    x = pd.read_csv(tmp_path / "x.csv")
    assert x.doc_id.tolist() == ["g1", "g2"] and x.speaker.tolist() == ["P1", "P2"]
    both = tmp_path / "both"  # a CSV's document and a file named like it
    both.mkdir()
    f.rename(both / f.name)
    (both / "g1.txt").write_text("Interviewer: Hello?\nR: We run it ourselves now.\n", encoding="utf-8")
    code, _, err = run_cli("segment", both, "-o", tmp_path / "y.csv")
    one_line_error(code, err, "two documents would both be doc 'g1'", "give them a manifest",
                   f"one in {(both / 'focus.csv').resolve()} and one in {(both / 'g1.txt').resolve()}")


def test_xlsx_header_is_read_as_written(tmp_path):
    from openpyxl import Workbook

    from discourse.errors import DiscourseError
    from discourse.tables import read_table

    wb = Workbook()
    wb.active.append(["id", "text", 2019])
    wb.active.append(["001", "We answer to them.", 3.5])
    wb.save(tmp_path / "ok.xlsx")
    df = read_table(tmp_path / "ok.xlsx", required=("text",))
    assert df.columns.tolist() == ["id", "text", "2019"] and df.values.tolist() == [["001", "We answer to them.", "3.5"]]
    wb.active.cell(1, 3).value = "id"  # pandas would have called it id.1
    wb.save(tmp_path / "dup.xlsx")
    with pytest.raises(DiscourseError, match="'id' used more than once"):
        read_table(tmp_path / "dup.xlsx")


def test_segment_output_inside_the_folder_it_reads_is_not_read_again(run_cli, tmp_path):
    d = study(tmp_path, {"a.txt": GOOD, "b.txt": GOOD})
    out = d / "excerpts.csv"
    runs = []
    for _ in range(2):
        code, stdout, err = run_cli("segment", d, "-o", out)
        assert code == 0 and "2 documents" in stdout, err
        runs.append(out.read_bytes())
    assert runs[0] == runs[1] and sorted(f.name for f in (d / "texts").iterdir()) == ["a.txt", "b.txt"]


@pytest.mark.slow
def test_classify_output_inside_the_folder_it_reads_is_not_read_again(run_cli, tmp_path):
    d = study(tmp_path, {"a.txt": GOOD, "b.vtt": b"WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v R>We run it now.</v>\n"})
    (d / "manifest.csv").unlink()
    for out, reused in ((d / "results", 0), (d / "results", 2), (d / "results2", 0)):
        code, stdout, err = run_cli("classify", d, "-o", out)
        assert code == 0, err
        assert f"2 documents ({reused} reused)" in stdout
    (d / "more").mkdir()
    (d / "more" / "a.txt").write_bytes(GOOD)
    code, _, err = run_cli("classify", d, "-o", d / "results")
    one_line_error(code, err, "two files would both be doc 'a'", str(d / "a.txt"), str(d / "more" / "a.txt"))


@pytest.mark.slow
def test_classify_removes_the_texts_of_documents_no_longer_in_the_study(run_cli, tmp_path):
    d = study(tmp_path, {"a.txt": GOOD, "b.txt": GOOD, "c.txt": GOOD})
    out = tmp_path / "out"
    assert run_cli("classify", "--manifest", d / "manifest.csv", "-o", out)[0] == 0
    (out / "texts" / "notes.md").write_text("mine", encoding="utf-8")
    (d / "manifest.csv").write_text("doc_id,file,trust\na,a.txt,A\n", encoding="utf-8")
    code, _, err = run_cli("classify", "--manifest", d / "manifest.csv", "-o", out)
    assert code == 0, err
    lines = [line for line in err.splitlines() if "removed" in line]
    assert lines == [f"warning: {out}: removed the texts and saved excerpts of 2 document(s) no longer in the study: b, c"]
    assert sorted(f.name for f in (out / "texts").iterdir()) == ["a.txt", "notes.md"]
    assert [f.name.split(".")[0] for f in (out / ".cache" / "docs").iterdir()] == ["a"]
    code, _, err = run_cli("classify", "--manifest", d / "manifest.csv", "-o", out)
    assert code == 0 and "removed" not in err
