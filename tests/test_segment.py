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
