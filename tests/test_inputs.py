"""Input tables read as the researcher meant them, or refused with one line naming the file, row and column."""

import os
from pathlib import Path

import pandas as pd
import pytest

from discourse.coded import read_coded, read_second_coding, split_codes
from discourse.errors import DiscourseError
from discourse.manifest import manifest_for_paths, read_manifest, read_speakers, select_documents

CODES = ["empowered", "consumer"]
TALK = "Interviewer: What is involvement for?\nR: It is for hearing people who are never heard, really.\n"


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def refused(fn, *args, needles=()):
    """Call ``fn``; it must raise a DiscourseError whose one line holds every needle."""
    with pytest.raises(DiscourseError) as e:
        fn(*args)
    line = str(e.value)
    assert "\n" not in line and "\r" not in line, line
    for n in needles:
        assert n in line, line
    return line


@pytest.fixture
def docs(tmp_path):
    """A folder with two transcripts, a.txt and b.txt."""
    for name in ("a.txt", "b.txt"):
        write(tmp_path, name, TALK)
    return tmp_path


# --- 1: column names ------------------------------------------------------------------------------------


def test_spaces_around_a_header_name_do_not_hide_the_column(docs):
    m = write(docs, "m.csv", "doc_id , file,  trust \na,a.txt,North\n")
    assert read_manifest(m)[["doc_id", "trust"]].values.tolist() == [["a", "North"]]
    s = write(docs, "s.csv", " doc_id,speaker ,role\na,R,Carer\n")
    assert read_speakers(s).values.tolist() == [["a", "R", "carer"]]
    c = write(docs, "c.csv", "id, text ,codes \n1,I chose my own care,empowered\n")
    assert read_coded(c, CODES)["codes"].tolist() == [["empowered"]]


@pytest.mark.parametrize("header,needle", [("doc_id,file,Trust", "'Trust' is not 'trust'"),
                                           ("Doc_ID,file,trust", "'Doc_ID' is not 'doc_id'"),
                                           ("doc_id,File,trust", "'File' is not 'file'"),
                                           ("doc_id,file,trust,Text", "column(s) Text would clash")])
def test_a_manifest_column_named_like_the_tools_own_in_other_case_is_refused(docs, header, needle):
    m = write(docs, "m.csv", f"{header}\na,a.txt,North{',x' * (header.count(',') - 2)}\n")
    refused(read_manifest, m, needles=("m.csv", needle, "rename"))


@pytest.mark.parametrize("header", ["id,text,Codes", "id,Text,codes", "Id,text,codes", "id,text,codes,Batch"])
def test_a_coded_table_column_in_other_case_is_refused(tmp_path, header):
    c = write(tmp_path, "c.csv", f"{header}\n1,I chose my own care,empowered{',b1' * (header.count(',') - 2)}\n")
    refused(read_coded, c, CODES, needles=("c.csv", "rename it"))


def test_predict_still_reads_other_columns_exactly_as_written(tmp_path):
    from discourse.tables import read_table

    t = write(tmp_path, "t.csv", "text, Note \nhello,x\n\n")
    assert read_table(t, required=("text",), exact=True).columns.tolist() == ["text", " Note "]


# --- 2, 3, 13: documents and their files --------------------------------------------------------------


def test_one_transcript_under_two_doc_ids_is_refused(docs):
    m = write(docs, "m.csv", "doc_id,file\nP01,a.txt\nP02,./a.txt\n")
    refused(read_manifest, m, needles=("m.csv", "'P01' (row 2)", "'P02' (row 3)", "same file"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_csv_of_several_documents_may_be_listed_once_per_document(tmp_path, encoding):
    (tmp_path / "focus.csv").write_text("doc_id,speaker,text\ng1,P1,We decide.\ng2,P2,They decide.\n", encoding=encoding)
    m = write(tmp_path, "m.csv", "doc_id,file\ng1,focus.csv\ng2,focus.csv\n")
    assert read_manifest(m)["doc_id"].tolist() == ["g1", "g2"]
    write(tmp_path, "focus.csv", "speaker,text\nP1,We decide.\n")  # one document: listing it twice reads it twice
    refused(read_manifest, m, needles=("'g1' (row 2)", "'g2' (row 3)", "same file"))


@pytest.mark.parametrize("doc_id,needle", [("site/P01", "row 2: doc_id 'site/P01'"),
                                           ("../../escaped", "row 2: doc_id '../../escaped'"),
                                           ("a:b", "'a:b'"), (".hidden", "starts with '.'"),
                                           ("P01.", "ends with '.'"), ("CON", "Windows reserves"),
                                           ("nul.txt", "Windows reserves")])
def test_a_doc_id_that_cannot_be_a_file_name_is_refused(docs, doc_id, needle):
    m = write(docs, "m.csv", f"doc_id,file\n{doc_id},a.txt\n")
    refused(read_manifest, m, needles=("m.csv", needle, "texts/<doc_id>.txt"))


def test_doc_ids_that_differ_only_in_case_are_refused(docs):
    m = write(docs, "m.csv", "doc_id,file\nP01,a.txt\np01,b.txt\n")
    refused(read_manifest, m, needles=("'P01' (row 2)", "'p01' (row 3)", "only in case"))
    write(docs, "sub/A.txt", TALK)
    refused(manifest_for_paths, [docs / "a.txt", docs / "sub" / "A.txt"], needles=("only in case",))


def test_csv_transcript_ids_are_checked_and_nothing_is_written_outside(run_cli, tmp_path):
    f = write(tmp_path / "in", "focus.csv", "doc_id,speaker,text\n../../escaped,P1,We decide.\n")
    out = tmp_path / "out" / "deep" / "x.csv"
    code, _, err = run_cli("segment", f, "-o", out)
    one_line_error(code, err, "focus.csv", "doc_id '../../escaped'")
    assert not any(tmp_path.rglob("escaped*"))
    write(tmp_path / "in", "focus.csv", "doc_id,speaker,text\nG1,P1,We decide.\ng1,P2,They decide.\n")
    code, _, err = run_cli("segment", f, "-o", out)
    one_line_error(code, err, "focus.csv", "'G1'", "'g1'", "only in case")


def test_file_cells_are_trimmed_and_windows_paths_work(docs):
    write(docs, "t/P01.txt", TALK)
    m = write(docs, "m.csv", "doc_id,file\nP01,t\\P01.txt \nP02, a.txt\n")
    df = read_manifest(m)
    assert df["path"].tolist() == [str((docs / "t" / "P01.txt").resolve()), str((docs / "a.txt").resolve())]


def test_a_linked_manifest_reads_files_beside_the_link(tmp_path):
    study, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    write(study, "a.txt", TALK)
    target = write(elsewhere, "manifest.csv", "doc_id,file\na,a.txt\n")
    write(study, "speakers.csv", "doc_id,speaker,role\na,R,carer\n")
    os.symlink(target, study / "manifest.csv")
    assert read_manifest(study / "manifest.csv")["path"].tolist() == [str((study / "a.txt").resolve())]
    from discourse.manifest import default_speakers_path

    assert default_speakers_path(study / "manifest.csv") == (study / "speakers.csv").absolute()


def test_a_file_given_twice_without_a_manifest_is_one_document(docs):
    df = manifest_for_paths([docs / "a.txt", docs, docs / "a.txt"])
    assert df["doc_id"].tolist() == ["a", "b"]


def test_a_folder_without_a_manifest_passes_over_lock_and_resource_files(docs):
    write(docs, "~$a.docx", "x")
    write(docs, "._a.txt", "x")
    assert manifest_for_paths([docs])["doc_id"].tolist() == ["a", "b"]


def test_hidden_files_and_folders_in_a_folder_are_not_transcripts(docs):
    write(docs, ".ipynb_checkpoints/a-checkpoint.txt", "Interviewer: Hello?\nR: A copy Jupyter keeps.\n")
    write(docs, ".draft.txt", "R: a hidden draft.\n")
    write(docs, "sub/.old/c.txt", "R: hidden deeper down.\n")
    write(docs, "sub/c.txt", "R: seen.\n")
    assert manifest_for_paths([docs])["doc_id"].tolist() == ["a", "b", "c"]
    assert manifest_for_paths([docs / ".ipynb_checkpoints"])["doc_id"].tolist() == ["a-checkpoint"]  # given: read


# --- 4: transcripts the manifest leaves out ------------------------------------------------------------


def test_transcripts_the_manifest_does_not_list_are_named_in_a_warning(docs, capsys):
    from discourse.cli import _load_study

    for name in ("c.txt", "d.docx", "e.txt", "f.txt", "g.txt", "h.txt"):
        write(docs, name, TALK)
    m = write(docs, "manifest.csv", "doc_id,file\na,a.txt\n")
    write(docs, "speakers.csv", "doc_id,speaker,role\na,R,carer\n")
    assert select_documents(read_manifest(m), [docs])["doc_id"].tolist() == ["a"]
    study = _load_study((str(docs),), str(m), None, False)
    assert [d.doc_id for d in study.documents] == ["a"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "not in the manifest" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: 7 transcript file(s)") and "b.txt, c.txt, d.docx, e.txt, f.txt and 2 more" in lines[0]
    assert "manifest.csv" not in lines[0] and "speakers.csv" not in lines[0]


# --- 5, 6: missing values in Parquet --------------------------------------------------------------------


def test_missing_codes_in_a_string_column_are_no_codes(tmp_path):
    p = tmp_path / "c.parquet"
    pd.DataFrame({"text": ["a", "b"], "codes": pd.array(["empowered", None], dtype="string")}).to_parquet(p)
    assert read_coded(p, CODES)["codes"].tolist() == [["empowered"], []]
    assert split_codes(pd.NA) == [] and split_codes(float("nan")) == []


def test_missing_values_in_parquet_manifests_and_speaker_tables(docs):
    m = docs / "m.parquet"
    pd.DataFrame({"doc_id": ["a", "b"], "file": ["a.txt", "b.txt"], "trust": ["North", None]}).to_parquet(m)
    assert read_manifest(m)["trust"].tolist() == ["North", "unknown"]
    pd.DataFrame({"doc_id": ["a", None], "file": ["a.txt", "b.txt"]}).to_parquet(m)
    refused(read_manifest, m, needles=("m.parquet", "row 3 has no doc_id"))
    s = docs / "s.parquet"
    pd.DataFrame({"doc_id": ["a", "a"], "speaker": ["R", None], "role": ["carer", "carer"]}).to_parquet(s)
    refused(read_speakers, s, needles=("s.parquet", "row 3 has no speaker"))


# --- 7, 8: row numbers, blank rows ----------------------------------------------------------------------


def test_row_numbers_count_blank_lines_as_a_spreadsheet_does(docs, tmp_path):
    m = write(docs, "m.csv", "doc_id,file,trust\na,a.txt,North\n\n,b.txt,South\n")
    refused(read_manifest, m, needles=("row 4 has no doc_id",))
    c = write(tmp_path, "c.csv", "id,text,codes\n1,I chose,empowered\n\n\n2,We were told,bogus\n")
    refused(read_coded, c, CODES, needles=("row 5: code(s) bogus",))
    c = write(tmp_path, "c.csv", "id,text,codes\n1,\"two\nlines\",empowered\n\n2,,consumer\n")
    refused(read_coded, c, CODES, needles=("(rows 4)",))


def test_rows_of_nothing_are_dropped_and_partly_blank_rows_are_refused(docs, tmp_path):
    m = write(docs, "m.csv", "doc_id,file,trust\r\na,a.txt,North\r\n,,\r\n,,\r\n")
    assert read_manifest(m)["doc_id"].tolist() == ["a"]
    m = write(docs, "m.csv", "doc_id,file,trust\na,a.txt,North\nb,,South\n")
    refused(read_manifest, m, needles=("row 3 (doc 'b') has no file",))
    s = write(docs, "s.csv", "doc_id,speaker,role\na,R,carer\n,,\na,,carer\n")
    refused(read_speakers, s, needles=("row 4 has no speaker",))
    s = write(docs, "s.csv", "doc_id,speaker,role\na,R,carer\n,,\na,Int\n")  # a blank role: as import-qdpx writes
    assert read_speakers(s)["role"].tolist() == ["carer", ""]
    c = write(tmp_path, "c.csv", "id,text,codes\n1,I chose,empowered\n,,\n")
    assert read_coded(c, CODES)["text"].tolist() == ["I chose"]


def test_blank_rows_of_a_sheet_are_dropped_with_rows_numbered_as_excel_shows_them(docs):
    from openpyxl import Workbook

    wb = Workbook()
    for row in (["doc_id", "file"], ["a", "a.txt"], [None, None], [None, "b.txt"], [None, None]):
        wb.active.append(row)
    wb.save(docs / "m.xlsx")
    refused(read_manifest, docs / "m.xlsx", needles=("row 4 has no doc_id",))


# --- 9, lesser: second coder ---------------------------------------------------------------------------


@pytest.fixture
def first(tmp_path):
    p = write(tmp_path, "test.csv", "id,text,codes\n001,I chose my own care,empowered\n002,We were told,\n")
    return read_coded(p, CODES), p


def test_a_second_coding_with_texts_must_be_of_the_same_excerpts(tmp_path, first):
    df, path = first
    ok = write(tmp_path, "second.csv", "id,text,codes\n002,  We were\ttold ,consumer\n001,,empowered\n")
    assert read_second_coding(ok, df, CODES, path)["second_codes"].tolist() == [["empowered"], ["consumer"]]
    bad = write(tmp_path, "second.csv", "id,text,codes\n001,I chose my own care,empowered\n002,I chose my own care,\n")
    refused(read_second_coding, bad, df, CODES, path, needles=("second.csv", "row 3", "id 002", "test.csv"))


def test_second_coder_ids_a_spreadsheet_turned_into_numbers_are_explained(tmp_path, first):
    df, path = first
    second = write(tmp_path, "second.csv", "id,codes\n1,empowered\n2.0,\n")
    refused(read_second_coding, second, df, CODES, path, needles=("2 id(s) are not in test.csv", "leading zeros"))


def test_a_blank_id_in_the_test_table_is_named_by_its_row(tmp_path):
    p = write(tmp_path, "test.csv", "id,text,codes\n1,a,empowered\n,b,\n,c,\n")
    second = write(tmp_path, "second.csv", "id,codes\n1,empowered\n")
    refused(read_second_coding, second, read_coded(p, CODES), CODES, p, needles=("test.csv", "row 3 has no id"))


# --- 15, 16, lesser: codes cells ------------------------------------------------------------------------


def test_unquoted_codes_spilling_into_the_next_column_are_refused(tmp_path):
    c = write(tmp_path, "c.csv", "id,text,codes,coder\n1,I chose my own care,empowered,consumer\n2,We were told,,AB\n")
    refused(read_coded, c, CODES, needles=("c.csv", "row 2", "column 'coder'", "quotes", "';'"))
    second = write(tmp_path, "s.csv", "id,codes,note\n1,empowered,consumer\n")
    refused(read_second_coding, second, read_coded(write(tmp_path, "t.csv", "id,text,codes\n1,a,\n"), CODES),
            CODES, "t.csv", needles=("s.csv", "row 2", "column 'note'"))


def test_a_column_of_codes_in_its_own_right_is_not_taken_for_spilled_codes(tmp_path):
    c = write(tmp_path, "c.csv", "text,codes,first_coder\nI chose,empowered,consumer\nWe were told,,empowered\n")
    assert read_coded(c, CODES)["first_coder"].tolist() == ["consumer", "empowered"]


def test_codes_on_several_lines_of_a_cell_and_in_capitals_are_read(tmp_path):
    c = write(tmp_path, "c.csv", 'text,codes\nI chose,"Empowered\r\nCONSUMER"\n')
    assert read_coded(c, CODES)["codes"].tolist() == [["consumer", "empowered"]]
    c = write(tmp_path, "c.csv", 'text,codes\nI chose,"empowered\nbogus\u2028more"\n')
    line = refused(read_coded, c, CODES, needles=("row 2: code(s) bogus, more are not in the codebook",))
    assert "\u2028" not in line


def test_the_same_text_coded_two_ways_is_a_warning(tmp_path):
    c = write(tmp_path, "c.csv", "text,codes\nI chose,empowered\nWe were told,\nI  chose,consumer\nWe were told,\n")
    df = read_coded(c, CODES)
    assert len(df) == 4
    [w] = df.attrs["warnings"]
    assert "c.csv" in w and "rows 2 and 4" in w and "\n" not in w


def test_a_header_only_table_keeps_its_columns(docs):
    s = write(docs, "s.csv", "doc_id,speaker,role\n")
    assert read_speakers(s).columns.tolist() == ["doc_id", "speaker", "role"] and read_speakers(s).empty


def test_a_speaker_label_written_with_its_colon_is_the_label(docs):
    s = write(docs, "s.csv", "doc_id,speaker,role\na,Interviewer:,interviewer\na,Jean Hartley :,user_governor\n")
    assert read_speakers(s)["speaker"].tolist() == ["Interviewer", "Jean Hartley"]


# --- folders: documents the tool cannot read, and its own outputs -----------------------------------------


def test_documents_of_a_type_the_tool_cannot_read_are_named_in_one_warning(docs):
    for name in ("old.doc", "notes.rtf", "t.pdf", "x.odt", "y.pages", "z.html", ".hidden.pdf", "~$old.doc",
                 ".git/z.pdf", "audio.m4a"):
        write(docs, name, "x")
    df = manifest_for_paths([docs])
    assert df["doc_id"].tolist() == ["a", "b"]
    [w] = df.attrs["warnings"]
    assert w.startswith("6 file(s) of a type the tool does not read are skipped: "), w
    assert f"{docs / 'notes.rtf'}, {docs / 'old.doc'}, {docs / 't.pdf'}" in w and "and 1 more" in w
    assert w.endswith("(to read a transcript, save it as .docx or .txt)")
    assert "hidden" not in w and "~$" not in w and ".git" not in w and "m4a" not in w
    m = write(docs, "manifest.csv", "doc_id,file\na,a.txt\nb,b.txt\nc,old.doc\n")
    [w] = select_documents(read_manifest(m), [docs]).attrs["warnings"]  # the one listed is read, and refused
    names = ", ".join(str(docs / n) for n in ("notes.rtf", "t.pdf", "x.odt", "y.pages", "z.html"))
    assert w == f"5 file(s) of a type the tool does not read are skipped: {names} (to read a transcript, save it as .docx or .txt)"


def classify_output(folder: Path) -> Path:
    """A folder as `discourse classify` leaves it: texts of its documents, run.json and predictions.parquet."""
    write(folder, "texts/a.txt", TALK)
    write(folder, "run.json", "{}")
    (folder / "predictions.parquet").write_bytes(b"PAR1")
    return folder


def test_the_tools_own_outputs_found_in_a_folder_are_not_read(docs):
    classify_output(docs / "results")  # an earlier run's
    assert manifest_for_paths([docs])["doc_id"].tolist() == ["a", "b"]
    write(docs, "out/texts/b.txt", TALK)  # this run's -o
    write(docs, "excerpts.csv", "doc_id,excerpt_id,speaker,text\na,e1,R,It is for hearing people.\n")  # segment's -o
    write(docs, "texts/a.txt", TALK)
    segment_out = (docs / "excerpts.csv", docs / "texts", docs / "turns.parquet")
    assert manifest_for_paths([docs], (docs / "out", *segment_out))["doc_id"].tolist() == ["a", "b"]
    m = write(docs, "manifest.csv", "doc_id,file\na,a.txt\n")
    [w] = select_documents(read_manifest(m), [docs], (docs / "out", *segment_out)).attrs["warnings"]
    assert "1 transcript file(s)" in w and "b.txt" in w and "results" not in w and "out/" not in w
    assert manifest_for_paths([docs / "results"])["doc_id"].tolist() == ["a"]  # a folder given is read
    assert manifest_for_paths([docs / "out"], (docs / "out",))["doc_id"].tolist() == ["b"]


def test_two_files_that_would_be_one_doc_are_both_named(docs):
    write(docs, "sub/a.docx", "x")
    refused(manifest_for_paths, [docs], needles=(f"two files would both be doc 'a', {docs / 'a.txt'} and "
                                                 f"{docs / 'sub' / 'a.docx'}", "rename one"))


# --- columns with no name ---------------------------------------------------------------------------------


def test_a_manifest_column_with_no_name_is_dropped_if_blank_and_refused_if_not(docs):
    m = write(docs, "m.csv", "doc_id,file,trust,setting,\na,a.txt,North,ward,\nb,b.txt,South,home,\n")
    assert read_manifest(m).columns.tolist() == ["doc_id", "file", "trust", "setting", "path"]
    m = write(docs, "m.csv", "doc_id,file,trust,,\na,a.txt,North,,\nb,b.txt,South,,\n")  # two trailing separators
    assert read_manifest(m).columns.tolist() == ["doc_id", "file", "trust", "path"]
    sp = write(docs, "speakers.csv", "doc_id,speaker,role,\na,R,nurse,\n")  # every table the tool reads, alike
    assert read_speakers(sp).columns.tolist()[:3] == ["doc_id", "speaker", "role"] and "" not in read_speakers(sp).columns
    m = write(docs, "m.csv", "doc_id,file,trust,\na,a.txt,North,\nb,b.txt,South,late\n")
    refused(read_manifest, m, needles=("m.csv", "column 4 (D) has no name in the header but holds values (row 3)"))
    from openpyxl import Workbook

    wb = Workbook()
    for row in (["doc_id", "file", None, "trust"], ["a", "a.txt", "x", "North"]):
        wb.active.append(row)
    wb.save(docs / "m.xlsx")
    refused(read_manifest, docs / "m.xlsx", needles=("m.xlsx", "column 3 (C) has no name"))


# --- the speaker table names labels the transcripts do not have -------------------------------------------


def test_speaker_table_rows_that_match_no_speaker_are_named_once_per_document(docs, capsys):
    from discourse.cli import _load_study

    write(docs, "c.txt", "Interviewer: Why?\nNurse (Band 6): Because we know.\nInterviewer: And?\nNurse (Band 6): Yes.\n")
    m = write(docs, "manifest.csv", "doc_id,file\na,a.txt\nb,b.txt\nc,c.txt\n")
    write(docs, "speakers.csv", "doc_id,speaker,role\na,R,carer\na,Resp,carer\na,Dr X,doctor\nb,R,carer\n"
                                "c,Nurse  (Band 6),nurse\nz,R,carer\n*,Facilitator,interviewer\n*,R,carer\n")
    study = _load_study((), str(m), None, False)
    assert study.turns.role.tolist() == ["interviewer", "carer"] * 2 + ["interviewer", "nurse"] * 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "match no speaker" in line]
    table = docs / "speakers.csv"
    assert lines == [
        f"warning: {table}: speaker(s) 'Facilitator' for every document (*) match no speaker read in any document; "
        "check each is written as the transcript labels it (a label not read leaves its lines in the turn before)",
        f"warning: {table}: speaker(s) 'Resp', 'Dr X' of doc 'a' match no speaker read in {(docs / 'a.txt').resolve()} "
        "(read: 'Interviewer', 'R'); check each is written as the transcript labels it (a label not read leaves "
        "its lines in the turn before)",
    ]


def test_a_semicolon_separated_csv_transcript_of_several_documents_may_be_listed_once_per_document(tmp_path):
    (tmp_path / "focus.csv").write_text("doc_id;speaker;text\ng1;P1;We decide.\ng2;P2;They decide.\n")
    m = write(tmp_path, "m.csv", "doc_id,file\ng1,focus.csv\ng2,focus.csv\n")
    assert read_manifest(m)["doc_id"].tolist() == ["g1", "g2"]


def test_a_csv_transcript_with_a_header_and_no_rows_is_skipped_with_its_reason(docs, capsys):
    from discourse.cli import _load_study

    write(docs, "head.csv", "speaker,text\n")
    study = _load_study((str(docs / "a.txt"), str(docs / "head.csv")), None, None, False)
    assert [d.doc_id for d in study.documents] == ["a"]
    assert study.skipped == [("head", f"{docs / 'head.csv'}: has a header but no rows")]
    assert f"warning: skipped head: {docs / 'head.csv'}: has a header but no rows" in capsys.readouterr().err


# --- the speaker table names documents the manifest does not have ---------------------------------------------


def test_speaker_table_rows_of_a_doc_id_not_in_the_manifest_are_named_once(docs, capsys):
    from discourse.cli import _load_study

    m = write(docs, "manifest.csv", "doc_id,file\nA01,a.txt\nB02,b.txt\n")
    write(docs, "speakers.csv", "doc_id,speaker,role\nA0l,R,carer\nb 02,R,carer\nB02,R,carer\nz9,R,carer\n"
                                "z9,Resp,carer\n*,R,carer\n")
    study = _load_study((str(docs / "a.txt"),), str(m), None, False)  # B02 not read this run: still no typo
    assert [d.doc_id for d in study.documents] == ["A01"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "name no document" in line]
    assert lines == [(f"warning: {docs / 'speakers.csv'}: rows of doc_id(s) 'A0l' (did you mean 'A01'?), 'b 02' (did "
                      f"you mean 'B02'?), 'z9' name no document in {m}, so their speakers get no role from them: "
                      "correct the doc_id, or remove the rows")]


def test_speaker_rows_of_a_csv_transcripts_own_doc_ids_are_known_without_a_manifest(tmp_path, capsys):
    from discourse.cli import _load_study

    f = write(tmp_path, "focus.csv", "doc_id,speaker,text\ng1,P1,We decide.\ng2,P2,They decide.\n")
    s = write(tmp_path, "sp.csv", "doc_id,speaker,role\ng1,P1,carer\ng2,P2,carer\ng3,P3,carer\n")
    _load_study((str(f),), None, str(s), False)
    lines = [line for line in capsys.readouterr().err.splitlines() if "name no document" in line]
    assert lines == [(f"warning: {s}: rows of doc_id(s) 'g3' name no document in the files given, so their speakers "
                      "get no role from them: correct the doc_id, or remove the rows")]


# --- a re-run of segment removes what it wrote of documents no longer in the study ---------------------------


def test_segment_removes_the_texts_of_documents_no_longer_in_the_study(run_cli, docs):
    write(docs, "c.txt", TALK)
    m = write(docs, "manifest.csv", "doc_id,file\na,a.txt\nb,b.txt\nc,c.txt\n")
    out = docs / "out" / "excerpts.csv"
    assert run_cli("segment", "--manifest", m, "-o", out, "--sentences", "rule")[0] == 0
    write(out.parent / "texts", "notes.md", "mine")
    cached = write(out.parent / ".cache" / "docs", "b.0123456789abcdef.parquet", "not segment's")
    write(docs, "manifest.csv", "doc_id,file\na,a.txt\n")
    code, _, err = run_cli("segment", "--manifest", m, "-o", out, "--sentences", "rule")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "removed" in line]
    assert lines == [f"warning: {out.parent}: removed the texts of 2 document(s) no longer in the study: b, c"]
    assert sorted(f.name for f in (out.parent / "texts").iterdir()) == ["a.txt", "notes.md"]
    assert cached.is_file()  # segment has no saved excerpts: a classify folder's are left to classify
    code, _, err = run_cli("segment", "--manifest", m, "-o", out, "--sentences", "rule")
    assert code == 0 and "removed" not in err
