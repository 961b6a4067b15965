import pandas as pd
import pytest

from discourse.segment import excerpt_id, segment
from discourse.transcripts import read_transcript


def turns_of(texts, roles=None):
    """A turns table for one document made of the given turn texts, offsets into their join."""
    rows, pos, parts = [], 0, []
    for i, t in enumerate(texts):
        parts.append(t)
        rows.append({"doc_id": "d", "turn": i, "speaker": f"S{i % 2}", "role": (roles or ["manager"] * len(texts))[i],
                     "trust": "A", "text": t, "start": pos, "end": pos + len(t)})
        pos += len(t) + 1
    return "\n".join(parts), pd.DataFrame(rows)


def test_excerpts_stay_inside_turns_with_exact_offsets(nlp):
    text, turns = turns_of([
        "We run a forum. It meets monthly. People come. Some of them have been coming for years. It works.",
        "Right. And the board has two governors on it who were patients.",
    ])
    ex = segment(turns, nlp)
    assert len(ex) >= 3
    for r in ex.itertuples():
        assert text[r.start:r.end] == r.text
        t = turns.iloc[r.turn]
        assert t.start <= r.start < r.end <= t.end
        assert 1 <= r.n_sentences <= 3
        assert r.excerpt_id == excerpt_id("d", r.start, r.end)
    assert ex.trust.unique().tolist() == ["A"]


def test_transcription_conventions_do_not_make_junk_excerpts(nlp):
    turn = ("Erm. Well, it's -- it's difficult . . . you know, to say. (laughs) [inaudible] "
            "We tried, um, we tried a survey. Mm. And, er, nobody filled it in.")
    text, turns = turns_of([turn])
    ex = segment(turns, nlp, max_sentences=1)
    for r in ex.itertuples():
        assert r.n_words >= 3
        assert r.text[0] not in ".,)]"
        assert not r.text.startswith(". .")
    assert any("nobody filled it in" in t for t in ex.text)
    joined = " ".join(ex.text)
    assert "you know, to say" in joined  # the pause did not cut the sentence away


def test_back_channels_and_interviewer_turns_are_not_excerpts(nlp):
    text, turns = turns_of(
        ["So what is it for?", "Yeah.", "Mm-hm.", "It's for hearing from people who use the service, really."],
        roles=["interviewer", "manager", "manager", "manager"],
    )
    ex = segment(turns, nlp)
    assert ex.text.tolist() == ["It's for hearing from people who use the service, really."]


def test_long_turn_without_punctuation_is_bounded(nlp):
    words = ("and then we talked about the forum " * 3000).strip()
    text, turns = turns_of([words])
    ex = segment(turns, nlp, max_tokens=100)
    assert len(ex) > 100
    assert ex.text.str.split().str.len().max() <= 100
    for r in ex.itertuples():
        assert text[r.start:r.end] == r.text


def test_segmenting_is_deterministic(nlp, tmp_path):
    p = tmp_path / "i.txt"
    p.write_text("Interviewer: Why?\nR: Because it matters. We listen. Then we act. Sometimes we don't.\n", encoding="utf-8")
    t = read_transcript(p)
    a, b = segment(t.turns, nlp), segment(t.turns, nlp)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("method", ["parser", "senter", "rule"])
def test_every_sentence_method_loads_and_segments(method):
    from discourse.segment import load_pipeline

    nlp = load_pipeline(method)
    text, turns = turns_of(["We talked about the forum. Nobody listened to it. Then we left and went home."])
    ex = segment(turns, nlp, max_sentences=1)
    assert ex.text.tolist() == ["We talked about the forum.", "Nobody listened to it.", "Then we left and went home."]


def test_manifest_columns_that_are_not_identifiers_are_carried(nlp):
    text, turns = turns_of(["We run a forum. It meets monthly and people come."])
    turns = turns.assign(**{"age group": "30-40", "class": "B", "_x": "1"})
    ex = segment(turns, nlp)
    assert ex[["age group", "class", "_x"]].values.tolist() == [["30-40", "B", "1"]]


def test_a_short_last_sentence_joins_the_excerpt_before_it(nlp):
    turn = "I was admitted in May. The ward was loud. Nurses were busy. Not good."
    text, turns = turns_of([turn, "Not good."])
    ex = segment(turns, nlp)
    assert ex.text.tolist() == [turn]  # nothing lost; a turn of under three words is still no excerpt
    assert ex.n_sentences.tolist() == [4] and text[ex.start[0]:ex.end[0]] == turn


def test_lower_case_transcripts_are_cut_into_normal_excerpts(nlp):
    said = ("i was admitted in may. the ward was loud and the nurses were busy. i did not like it at all. "
            "my mum visited me every day though. she brought food. it helped a lot. ") * 3
    text, turns = turns_of([said.strip()])
    ex = segment(turns, nlp)
    assert len(ex) >= 5 and ex.n_words.max() <= 40 and ex.n_sentences.max() <= 3
    for r in ex.itertuples():
        assert text[r.start:r.end] == r.text


@pytest.mark.parametrize("turn", [
    "We went to the meeting . . . and nobody came at all. Then we left the building.",
    'They asked us, "any comments from the service user side?" and that was it. Then we left the building.',
])
def test_lower_case_after_a_pause_or_a_quotation_still_continues(nlp, turn):
    text, turns = turns_of([turn])
    ex = segment(turns, nlp, max_sentences=1)
    assert ex.text.tolist()[1] == "Then we left the building."


@pytest.mark.parametrize("turn", [
    "Yeah, yeah, yeah.", "Mm-hm. Yeah. Right.", "Erm... well... no.", "(laughs) Yeah (laughs)",
    "[inaudible] [crosstalk] [inaudible]", "(laughs) Yes. [inaudible 00:12:31]",
])
def test_turns_of_back_channels_and_transcription_notes_are_not_excerpts(nlp, turn):
    text, turns = turns_of(["So the board meets monthly and you sit on it, yes?", turn], roles=["interviewer", "manager"])
    assert segment(turns, nlp).empty


def test_transcription_notes_are_not_counted_as_words(nlp):
    text, turns = turns_of(["(laughs) We tried a survey. [inaudible] (Long pause) Nobody filled it in."])
    assert segment(turns, nlp).n_words.tolist() == [8]


def test_decomposed_accents_do_not_split_words(nlp):
    import unicodedata

    said = "The café gave us a résumé of the naïve plan. Élan, they called it."
    nfd = unicodedata.normalize("NFD", said)
    text, turns = turns_of([nfd])
    ex = segment(turns, nlp)
    assert ex.n_words.tolist() == segment(turns_of([said])[1], nlp).n_words.tolist() == [14]
    assert ex.text.tolist() == [nfd] and text[ex.start[0]:ex.end[0]] == nfd
