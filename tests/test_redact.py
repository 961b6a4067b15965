"""Redaction: what a shared report or QDA project must not carry, and what it must keep."""

from __future__ import annotations

import pandas as pd
import pytest

from discourse.redact import Redactor, is_name, pseudonyms


@pytest.fixture(scope="module")
def redactor():
    return Redactor(names=["Dave Hughes", "Jo", "Will Hope", "jane smith", "Dr Okafor", "Siobhán O’Brien",
                           "Support Worker", "Researcher", "Speaker 2"])


@pytest.mark.parametrize("text, gone, tags", [
    ("Call me on 07700 900123 or +44 20 7946 0958, or (0113) 496 0000.",
     ["07700", "7946", "496 0000"], ["[PHONE]"] * 3),
    ("You can write to jane.smith@nhs.net about it.", ["jane.smith", "nhs.net"], ["[EMAIL]"]),
    ("My NHS number is 943 476 5919 and hospital number RX1234567.", ["943", "RX1234567"], ["[ID]", "[ID]"]),
    ("I live at 14 Acacia Avenue, postcode SW1A 1AA.", ["14 Acacia", "SW1A"], ["[ADDRESS]", "[POSTCODE]"]),
    ("Born on 12/03/1985, or 12 March 1985, or March 12th, 1985.", ["1985"], ["[DATE]"] * 3),
])
def test_contact_details_and_identifiers_are_replaced(redactor, text, gone, tags):
    out = redactor(text)
    assert not [g for g in gone if g in out], out
    assert sorted(w.strip(".,") for w in out.split() if w.startswith("[")) == sorted(tags), out


def test_numbers_that_identify_nobody_stay(redactor):
    text = "In 2019 we had 1,000,000 visits, 2,500 staff, 45 beds and a 3.5% rise; it took 3 years along the way."
    assert redactor(text) == text


def test_names_in_any_case_and_spelling(redactor):
    out = redactor("Then DAVE HUGHES came, and dave hughes again; Jane Smith and O'Brien too. Jo said so.")
    for name in ("DAVE", "dave", "Jane", "Smith", "O'Brien", "Jo "):
        assert name not in out, out
    # a line written without capitals (speech-to-text): single names too, but not common words
    assert redactor("R: then i told dave and jo, and will said we hope so") == \
        "R: then i told [PERSON] and [PERSON], and will said we [PERSON] so"  # a name part, not a common word
    assert redactor("I will ask him. We hope so.") == "I will ask him. We hope so."  # Will and Hope only as names
    assert redactor("I asked Will.") == "I asked [PERSON]."


def test_role_labels_are_not_names(redactor):
    for label in ("Support Worker", "Researcher", "Interviewee", "Service User 2", "Carer", "Mum", "R", "P3",
                  "Speaker 4"):
        assert not is_name(label), label
    assert is_name("Jo") and is_name("Dr Okafor") and is_name("Marcus Bellamy")
    text = "The Researcher asked me, and my Support Worker helps."
    assert redactor(text) == text


def test_a_tag_never_swallows_a_line_break(redactor):
    text = "R: I went with my friend Sarah\nDave Hughes: That was at Leeds General\nInfirmary, with the CMHT."
    out, newpos = redactor.with_offsets(text)
    assert out.count("\n") == 2 and out.split("\n")[1].startswith("[PERSON]: That was at [PLACE]")
    assert "CMHT" in out  # service acronyms carry meaning and identify nobody
    assert newpos(text.index("Infirmary")) == out.index("Infirmary")


def test_long_documents_are_redacted_whole(redactor, monkeypatch):
    import discourse.redact as redact

    assert redact._MAX_PIECE * 5 <= redactor.nlp.max_length  # a piece is always far under spaCy's limit
    monkeypatch.setattr(redact, "_MAX_PIECE", 2_000)
    monkeypatch.setattr(redactor.nlp, "max_length", 4_000)  # as if this were a 20 MB transcript
    one_line = "R: I spoke to Dave Hughes about the ward in Leeds and it went well. " * 200  # 13,600 characters
    text = one_line + "\n" + "Last line, 07700 900123."
    out = redactor(text)
    assert "Dave" not in out and "Leeds" not in out and out.endswith("Last line, [PHONE].")
    assert out.count("[PERSON]") == 200 and out.count("[PLACE]") == 200


def test_pseudonyms_never_collide_with_a_documents_own_numbers():
    table = pd.DataFrame({"doc_id": ["D1"] * 4 + ["D2"], "speaker": ["Speaker 1", "Jane", "Interviewer", "Alan", "Jo"]})
    assert dict(pseudonyms(table)) == {("D1", "Alan"): "Speaker 2", ("D1", "Jane"): "Speaker 3", ("D2", "Jo"): "Speaker 1"}


LABELLED = ("Interviewer: Hello Jo, and you, Dave Hughes.\n"
            "[00:00:09] Jo: I met Dave Hughes at the CMHT.\n"
            "[00:01:10] Then I went home.\n"
            "[Dave  Hughes]: Jo helped me.\n"
            "Dave Hughes  0:03\nIt was fine.\n"
            "Nurse: Jo is right.\n")


def test_the_label_opening_a_named_speakers_turn_becomes_their_pseudonym(redactor):
    from discourse.redact import label_spans

    turns = [("Interviewer", "Hello"), ("Jo", "I met"), ("Jo", "Then I"), ("Dave Hughes", "Jo helped"),
             ("Dave Hughes", "It was"), ("Nurse", "Jo is")]
    anchors = [(s, LABELLED.index(first)) for s, first in turns]
    spans = label_spans(LABELLED, anchors, {"Jo": "Speaker 1", "Dave Hughes": "Speaker 2"})
    assert [(LABELLED[s:e], tag) for s, e, tag in spans] == [  # none for the turn that goes on after a timestamp
        ("Interviewer", "Interviewer"), ("Jo", "Speaker 1"), ("Dave  Hughes", "Speaker 2"), ("Dave Hughes", "Speaker 2"),
        ("Nurse", "Nurse")]  # roles are kept as written, whatever the named-entity model makes of them
    red, newpos = redactor.with_offsets(LABELLED, spans)
    lines = red.split("\n")
    assert lines[0].startswith("Interviewer: Hello [PERSON]") and lines[1].startswith("[00:00:09] Speaker 1: I met [PERSON]")
    assert lines[2] == "[00:01:10] Then I went home."  # a timestamp identifies nobody
    assert lines[3] == "[Speaker 2]: [PERSON] helped me." and lines[4] == "Speaker 2  0:03" and lines[6].startswith("Nurse: ")
    assert "Jo" not in red and "Dave" not in red and "Hughes" not in red
    starts = ["Hello", "I met", "Then I", "[PERSON] helped", "It was", "[PERSON] is"]  # each turn where offsets say
    assert [red[newpos(a):newpos(a) + len(w)] for (_, a), w in zip(anchors, starts)] == starts


def test_a_redacted_project_shows_who_speaks_as_its_cases_do(tmp_path, book, redactor):
    """Sources of a redacted .qdpx: each named speaker's label is the case's pseudonym, roles stay, spans hold."""
    import io
    import json
    import re
    import zipfile
    from xml.etree import ElementTree as ET

    from discourse.qdpx import export_qdpx

    raw = ("INTERVIEWER: Thanks for seeing me.\r\nPriya Shah (Research Team): Tom, what did you do?\r\nTom Ellis: I ran the group with Margaret Ellis.\r\n"
           "Margaret Ellis: Tom asked for a say.\r\nNurse: We listened to Tom.\r\n")
    out = tmp_path / "out"
    (out / "texts").mkdir(parents=True)
    (out / "texts" / "D1.txt").write_bytes(raw.encode("utf-8"))
    turns = pd.DataFrame({"doc_id": "D1", "turn": range(5),
                          "speaker": ["INTERVIEWER", "Priya Shah (Research Team)", "Tom Ellis", "Margaret Ellis", "Nurse"],
                          "role": ["interviewer", "interviewer", "service_user", "carer", "nurse"], "trust": "A",
                          "start": [raw.index(w) for w in ("Thanks", "Tom, what", "I ran", "Tom asked", "We listened")]})
    turns.to_parquet(out / "turns.parquet", index=False)
    said = ["I ran the group with Margaret Ellis.", "Tom asked for a say.", "We listened to Tom."]
    pred = pd.DataFrame({"excerpt_id": ["e1", "e2", "e3"], "doc_id": "D1", "speaker": turns.speaker[2:].tolist(),
                         "role": turns.role[2:].tolist(), "trust": "A", "text": said,
                         "start": [raw.index(t) for t in said], "end": [raw.index(t) + len(t) for t in said],
                         "codes": ["consumer", "empowered", "consumer"], "p_consumer": 0.9, "p_empowered": 0.8})
    pred.to_parquet(out / "predictions.parquet", index=False)
    (out / "run.json").write_text(json.dumps({"model": {"folder": "default"}}), encoding="utf-8")
    redactor = Redactor(names=turns.speaker, nlp=redactor.nlp)
    export_qdpx(out, book, tmp_path / "r.qdpx", redactor=redactor)
    zf = zipfile.ZipFile(io.BytesIO((tmp_path / "r.qdpx").read_bytes()))
    root = ET.fromstring(zf.read("project.qde"))
    ns = root.tag[:root.tag.index("}") + 1]
    text = zf.read(next(n for n in zf.namelist() if n.startswith("sources/"))).decode()
    # the named-entity model takes INTERVIEWER for an organisation: as a speaker's label, it stays
    assert [line.split(":")[0] for line in text.splitlines()] == ["INTERVIEWER", "Speaker 2", "Speaker 3", "Speaker 1",
                                                                  "Nurse"]
    assert sorted(c.get("name") for c in root.iter(ns + "Case")) == ["D1/INTERVIEWER", "D1/Nurse", "D1/Speaker 1",
                                                                      "D1/Speaker 2", "D1/Speaker 3"]
    assert not re.search(r"Tom|Ellis|Priya|Shah", text)
    spans = {s.get("name"): text[int(s.get("startPosition")):int(s.get("endPosition"))]
             for s in root.iter(ns + "PlainTextSelection")}
    assert spans == {"excerpt e1": "I ran the group with [PERSON].", "excerpt e2": "[PERSON] asked for a say.",
                     "excerpt e3": "We listened to [PERSON]."}
