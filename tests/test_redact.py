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
