import codecs

import pytest

from discourse.errors import DiscourseError
from discourse.transcripts import read_transcript, read_transcripts


def check_offsets(t):
    assert len(t.turns) > 0
    for r in t.turns.itertuples():
        assert t.text[r.start:r.end] == r.text
        assert r.text == r.text.strip() and r.text


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


TXT = """Interview 4, Trust B, 3 March
[00:00:02] Interviewer: Could you tell me what involvement means here?
[00:00:07] R: Erm, well -- it's a lot of things. We have a . . . a service user forum.
It meets monthly.

(00:55) R: And there's the survey.
[Interviewer] Mm-hm.
INT - What about the board?
Dr Okafor: The board, yes (laughs). [inaudible] We do try.
P3: Yeah.
"""


def test_txt_labels_timestamps_and_continuations(tmp_path):
    t = read_transcript(write(tmp_path, "int4.txt", TXT))
    check_offsets(t)
    assert t.text == TXT  # canonical text of a .txt is the file itself
    got = list(zip(t.turns.speaker, t.turns.text))
    assert got == [
        ("Interviewer", "Could you tell me what involvement means here?"),
        ("R", "Erm, well -- it's a lot of things. We have a . . . a service user forum.\nIt meets monthly."),
        ("R", "And there's the survey."),
        ("Interviewer", "Mm-hm."),
        ("INT", "What about the board?"),
        ("Dr Okafor", "The board, yes (laughs). [inaudible] We do try."),
        ("P3", "Yeah."),
    ]
    assert all("00:" not in x for x in t.turns.text)


def test_txt_crlf_and_bom_and_utf16(tmp_path):
    text = "Interviewer: Hello there.\r\nR: Café culture, naïve views — fine.\r\n"
    for enc, prefix in (("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)):
        p = tmp_path / f"x_{enc}.txt"
        p.write_bytes(prefix + text.encode(enc))
        t = read_transcript(p)
        check_offsets(t)
        assert t.turns.text.tolist() == ["Hello there.", "Café culture, naïve views — fine."]


def test_txt_cp1252_is_read_with_a_warning(tmp_path):
    p = tmp_path / "old.txt"
    p.write_bytes("Interviewer: Hi.\nR: It’s a café.\n".encode("cp1252"))
    t = read_transcript(p)
    check_offsets(t)
    assert t.turns.text.tolist()[1] == "It’s a café."
    assert any("cp1252" in w for w in t.warnings)


def test_unlabelled_text_is_one_unknown_speaker(tmp_path):
    t = read_transcript(write(tmp_path, "notes.txt", "Just some notes.\nAnother line.\n"))
    check_offsets(t)
    assert t.turns.speaker.tolist() == ["unknown"]
    assert any("no speaker labels" in w for w in t.warnings)


def test_rare_label_needs_to_recur_or_be_known(tmp_path):
    text = "Interviewer: Go on.\nR: Honestly: it was fine.\nNote: later.\n"
    t = read_transcript(write(tmp_path, "a.txt", text))
    assert t.turns.speaker.tolist() == ["Interviewer", "R"]
    t2 = read_transcript(tmp_path / "a.txt", known_speakers={"Note"})
    assert t2.turns.speaker.tolist() == ["Interviewer", "R", "Note"]


def test_docx_paragraphs_and_tables(tmp_path):
    import docx

    d = docx.Document()
    d.add_paragraph("Transcript of interview 7")
    d.add_paragraph("Interviewer: What is it for?")
    d.add_paragraph("R: It is for people to be heard. [00:03:10] Really heard.")
    d.add_paragraph("A continuation paragraph.")
    table = d.add_table(rows=2, cols=3)
    for row, (ts, who, said) in zip(table.rows, [("00:04:00", "Interviewer", "And then?"), ("00:04:05", "R", "Then we met.")]):
        row.cells[0].text, row.cells[1].text, row.cells[2].text = ts, who, said
    p = tmp_path / "int7.docx"
    d.save(p)
    t = read_transcript(p)
    check_offsets(t)
    assert list(zip(t.turns.speaker, t.turns.text)) == [
        ("Interviewer", "What is it for?"),
        ("R", "It is for people to be heard."),
        ("R", "Really heard.\nA continuation paragraph."),
        ("Interviewer", "And then?"),
        ("R", "Then we met."),
    ]


VTT = """WEBVTT

NOTE exported from Teams

1
00:00:01.000 --> 00:00:04.000
<v Sam Patel>So what do you</v>

2
00:00:04.000 --> 00:00:06.500
<v Sam Patel>think it is for?</v>

3
00:00:07.000 --> 00:00:12.000
<v.loud Dr Jo Reed>It&apos;s for &amp; with people.</v>

00:00:12.500 --> 00:00:14.000
Dr Jo Reed: More words here.
"""

SRT = """1
00:00:01,000 --> 00:00:03,000
Interviewer: Hello.

2
00:00:03,500 --> 00:00:05,000
Speaker 2: Hi, <i>yes</i>.

3
00:00:05,000 --> 00:00:07,000
And more from speaker two.
"""


def test_vtt_voices_merge_consecutive_cues(tmp_path):
    t = read_transcript(write(tmp_path, "zoom.vtt", VTT))
    check_offsets(t)
    assert list(zip(t.turns.speaker, t.turns.text)) == [
        ("Sam Patel", "So what do you think it is for?"),
        ("Dr Jo Reed", "It's for & with people. More words here."),
    ]
    assert t.turns.t_start.tolist() == [1.0, 7.0] and t.turns.t_end.tolist() == [6.5, 14.0]


def test_srt_name_prefixes_and_continuations(tmp_path):
    t = read_transcript(write(tmp_path, "otter.srt", SRT))
    check_offsets(t)
    assert list(zip(t.turns.speaker, t.turns.text)) == [
        ("Interviewer", "Hello."),
        ("Speaker 2", "Hi, yes. And more from speaker two."),
    ]


def test_csv_single_and_multi_document(tmp_path):
    p = write(tmp_path, "turns.csv", "speaker,text\nInterviewer,Why?\nR,\"Because, well, it matters.\"\nR,\n")
    t = read_transcript(p)
    check_offsets(t)
    assert t.doc_id == "turns" and t.turns.text.tolist() == ["Why?", "Because, well, it matters."]
    assert any("no text" in w for w in t.warnings)
    p2 = write(tmp_path, "many.csv", "doc_id,speaker,text\nd2,R,Two.\nd1,R,One.\nd1,I,Q?\n")
    docs = read_transcripts(p2)
    assert [d.doc_id for d in docs] == ["d1", "d2"]
    assert read_transcript(p2, doc_id="d2").turns.text.tolist() == ["Two."]


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("empty.txt", b"", "empty"),
        ("blank.txt", b"  \n\n", "empty"),
        ("bin.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("bad.txt", b"Interviewer: caf\x81\x8d\n", "re-save it as UTF-8"),
        ("fake.docx", b"Interviewer: not really a docx", "not a zip"),
        ("nocues.vtt", b"WEBVTT\n\nhello\n", "no subtitle cues"),
        ("cols.csv", b"who,said\nR,hi\n", "missing speaker, text"),
        ("head.csv", b"speaker,text\n", "has a header but no rows"),
        ("heads.csv", b"doc_id;speaker;text\n\n", "has a header but no rows"),
        ("x.pdf", b"%PDF-1.4", "unsupported"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, name, data, message):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(DiscourseError) as err:
        read_transcripts(p)
    assert message in str(err.value) and name in str(err.value)


def test_unlabelled_text_keeps_timestamps_out(tmp_path):
    t = read_transcript(write(tmp_path, "u.txt", "Sam Patel: A.\n[00:12:31] INTERVIE - A.\n"))
    check_offsets(t)
    assert t.turns.speaker.unique().tolist() == ["unknown"]
    assert all("00:12" not in x for x in t.turns.text)


def test_a_stammer_after_a_line_break_is_not_a_speaker_label():
    from discourse.transcripts import parse_text_turns

    text = "INT - What happened next?\nP1 - We went to the meeting and said our piece,\nI - I wasn't sure they heard me though.\nINT - Right.\n"
    turns, _ = parse_text_turns(text, "d")
    assert turns.speaker.tolist() == ["INT", "P1", "INT"]
    p1 = turns.iloc[1]
    assert text[p1.start:p1.end].endswith("I - I wasn't sure they heard me though.")


def test_a_label_seen_once_is_read_as_speech_with_a_warning(tmp_path):
    text = ("Interviewer: What did you think of the service?\n"
            "John: Honestly it was terrible, nobody listened to me at all.\n"
            "Interviewer: Thanks. Anything else?\nR: The food was fine I suppose.\n")
    t = read_transcript(write(tmp_path, "once.txt", text))
    check_offsets(t)
    assert t.turns.speaker.tolist() == ["Interviewer", "Interviewer", "R"]  # still absorbed, but said
    [warning] = t.warnings
    assert str(tmp_path / "once.txt") in warning and "line 2" in warning and "'John'" in warning
    assert read_transcript(tmp_path / "once.txt", known_speakers={"John"}).warnings == ()


def test_subtitles_without_speaker_names_warn(tmp_path):
    vtt = "WEBVTT\n\n1\n00:00:01.000 --> 00:00:04.000\nWhat did you think?\n\n2\n00:00:05.000 --> 00:00:09.000\nIt was fine.\n"
    t = read_transcript(write(tmp_path, "nospk.vtt", vtt))
    assert t.turns.speaker.tolist() == ["unknown"]
    assert any("no speaker labels" in w for w in t.warnings)
    assert not read_transcript(write(tmp_path, "zoom.vtt", VTT)).warnings


ANSWER = "I think people who use services should have a real say."


@pytest.mark.parametrize("label", ["A&E Nurse", "Carer/Parent", "Mr Smith, Carer", "Nurse (Band 6)",
                                   "Participant 3 (service user)", "Carer / Parent", "Éanna"])
def test_labels_with_ampersands_slashes_commas_and_brackets_are_speakers(tmp_path, label):
    text = f"Interviewer: What does involvement mean?\n{label}: {ANSWER}\nInterviewer: Why?\n{label}: Because we know.\n"
    t = read_transcript(write(tmp_path, "lab.txt", text))
    check_offsets(t)
    assert t.turns.speaker.tolist() == ["Interviewer", label, "Interviewer", label]
    assert t.turns.text.tolist()[1] == ANSWER and t.warnings == ()


def test_a_bracketed_part_is_the_speakers_unless_it_is_a_note_or_a_time(tmp_path):
    from discourse.transcripts import is_interviewer_label

    text = ("Interviewer (KL): How did you get involved?\nR (laughs): Through the group.\n"
            "Interviewer (KL): And then?\nR (00:12): Then I joined.\nR(inaudible): Yes.\n")
    t = read_transcript(write(tmp_path, "paren.txt", text))
    check_offsets(t)
    assert t.turns.speaker.tolist() == ["Interviewer (KL)", "R", "Interviewer (KL)", "R", "R"]
    assert t.turns.text.tolist()[1:] == ["Through the group.", "And then?", "Then I joined.", "Yes."]
    assert is_interviewer_label("Interviewer (KL)") and not is_interviewer_label("Nurse (Band 6)")
    once = "Interviewer: Why?\nNurse (Band 6): Because we know.\n"  # seen once: the speaker table can name it
    assert read_transcript(write(tmp_path, "once.txt", once), known_speakers={"Nurse (Band 6)"}
                           ).turns.speaker.tolist() == ["Interviewer", "Nurse (Band 6)"]


def test_sentences_with_a_colon_are_still_not_labels(tmp_path):
    said = ["For example: the crisis line never answered.", "Yes, and then: we left.",
            "Lots of A&E staff: they never came.", "So the Carer/Parent group: it folded.",
            "I think (honestly): no.", "The meeting (on Tuesday): nobody came."]
    text = "Interviewer: Go on.\n" + "".join(f"R: Well.\n{s}\n" for s in said * 2)
    t = read_transcript(write(tmp_path, "said.txt", text))
    assert set(t.turns.speaker) == {"Interviewer", "R"} and t.warnings == ()
    assert all(s in t.text for s in said)


def test_words_before_the_first_label_are_warned_about(tmp_path):
    text = "Participant 7, recorded at the Oakfield Unit.\n[00:00:01]\nShe said it matters.\nInterviewer: Thanks.\nR: Fine.\n"
    t = read_transcript(write(tmp_path, "pre.txt", text))
    assert t.turns.speaker.tolist() == ["Interviewer", "R"]
    [warning] = t.warnings
    assert warning.startswith(str(tmp_path / "pre.txt")) and "11 word(s) before the first speaker label (lines 1-3)" in warning
    assert not read_transcript(write(tmp_path, "none.txt", "[00:00:01]\nInterviewer: Thanks.\nR: Fine.\n")).warnings


def test_a_label_seen_once_after_a_timestamp_is_said_to_start_a_new_turn(tmp_path):
    text = ("[00:00:04] Interviewer: Thanks for making time.\n[00:00:09] Dr Smith: It is fine.\n"
            "[00:01:40] Intervewer: And beyond the consultation?\n[00:01:46] Dr Smith: Peer reviewers.\n")
    t = read_transcript(write(tmp_path, "int04.txt", text))
    assert t.turns.speaker.tolist() == ["Interviewer", "Dr Smith", "Dr Smith", "Dr Smith"]
    [warning] = t.warnings
    assert "line 3" in warning and "'Intervewer'" in warning and "a new turn of Dr Smith (turn 2)" in warning
    assert "part of" not in warning
    joined = "Interviewer: Why?\nR: Because.\nJohn: it was bad.\nInterviewer: Thanks.\nMary: Yes.\n"
    [warning] = read_transcript(write(tmp_path, "two.txt", joined)).warnings
    assert "lines 3 ('John': part of R's turn 1), 5 ('Mary': part of Interviewer's turn 2)" in warning


@pytest.mark.parametrize("sep", [";", "\t"])
def test_csv_transcripts_separated_by_semicolons_or_tabs(tmp_path, sep):
    data = f'speaker{sep}text\nInterviewer{sep}"How did you get involved?"\nR{sep}"Through the carers group; my son, then."\n'
    t = read_transcript(write(tmp_path, "semi.csv", data))
    check_offsets(t)
    assert list(zip(t.turns.speaker, t.turns.text)) == [
        ("Interviewer", "How did you get involved?"), ("R", "Through the carers group; my son, then.")]


def test_a_csv_transcript_without_its_columns_shows_the_header_found(tmp_path):
    with pytest.raises(DiscourseError, match=r"missing speaker, text; found: who\|said"):
        read_transcripts(write(tmp_path, "pipes.csv", "who|said\nR|hi\n"))


def test_a_csv_transcript_with_a_header_and_no_rows_is_refused_even_when_a_doc_is_named(tmp_path):
    p = write(tmp_path, "head.csv", "doc_id,speaker,text\n")
    with pytest.raises(DiscourseError, match=r"head\.csv: has a header but no rows"):
        read_transcripts(p, doc_id="d1")
