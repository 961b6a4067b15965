"""Property-based tests: offsets hold for generated transcripts in every format."""

import string

import docx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discourse.segment import segment
from discourse.transcripts import read_transcript

LABELS = st.sampled_from(["Interviewer", "R", "P3", "Dr Smith", "INT", "Sam Patel", "Participant 2", "Facilitator"])
STYLES = st.sampled_from(["colon", "bracket", "dash"])
STAMP = st.sampled_from(["", "[00:12:31] ", "(00:12) ", "[01:02:03.500] "])
WORDS = st.text(
    alphabet=st.sampled_from(list(string.ascii_letters) + list("éüñçøß’—“”…") + ["漢", "😀"]),
    min_size=1, max_size=9,
)
SENTENCE = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(WORDS, min_size=1, max_size=12),
    st.sampled_from([".", "?", "!", " . . .", "", " [inaudible].", " (laughs)"]),
)
TURNS = st.lists(st.tuples(LABELS, STYLES, STAMP, st.lists(SENTENCE, min_size=1, max_size=4)), min_size=1, max_size=8)


def label(name, style):
    if style == "bracket":
        return f"[{name}] "
    if style == "dash":
        return f"{name.upper().replace(' ', '')[:8]} - "
    return f"{name}: "


def render_txt(turns, newline):
    lines = []
    for name, style, stamp, sents in turns:
        lines.append(stamp + label(name, style) + " ".join(sents))
    return newline.join(lines) + newline


settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@given(TURNS, st.sampled_from(["\n", "\r\n"]))
def test_txt_offsets_hold(tmp_path_factory, turns, newline):
    p = tmp_path_factory.mktemp("h") / "t.txt"
    p.write_bytes(render_txt(turns, newline).encode("utf-8"))
    t = read_transcript(p)
    assert t.text == p.read_bytes().decode("utf-8")
    for r in t.turns.itertuples():
        assert t.text[r.start:r.end] == r.text
        assert "00:12" not in r.text and "01:02:03" not in r.text


@given(TURNS)
def test_docx_offsets_hold(tmp_path_factory, turns):
    d = docx.Document()
    for name, style, stamp, sents in turns:
        d.add_paragraph(stamp + label(name, style) + " ".join(sents))
    p = tmp_path_factory.mktemp("h") / "t.docx"
    d.save(p)
    t = read_transcript(p)
    for r in t.turns.itertuples():
        assert t.text[r.start:r.end] == r.text


@given(TURNS, st.booleans())
def test_vtt_offsets_hold_and_speakers_merge(tmp_path_factory, turns, voice_tags):
    cues, sec = ["WEBVTT", ""], 0
    for name, _, _, sents in turns:
        for s in sents:
            body = f"<v {name}>{s}</v>" if voice_tags else f"{name}: {s}"
            cues += [f"00:{sec // 60:02d}:{sec % 60:02d}.000 --> 00:{sec // 60:02d}:{sec % 60:02d}.900", body, ""]
            sec += 1
    p = tmp_path_factory.mktemp("h") / "t.vtt"
    p.write_text("\n".join(cues), encoding="utf-8")
    t = read_transcript(p)
    for r in t.turns.itertuples():
        assert t.text[r.start:r.end] == r.text
    speakers = t.turns.speaker.tolist()
    assert all(a != b for a, b in zip(speakers, speakers[1:]))


@settings(max_examples=25, derandomize=True)
@given(TURNS)
def test_excerpt_offsets_hold_with_real_spacy(nlp, tmp_path_factory, turns):
    p = tmp_path_factory.mktemp("h") / "t.txt"
    p.write_text(render_txt(turns, "\n"), encoding="utf-8")
    t = read_transcript(p)
    ex = segment(t.turns, nlp)
    for r in ex.itertuples():
        assert t.text[r.start:r.end] == r.text
        turn = t.turns.iloc[r.turn]
        assert turn.start <= r.start and r.end <= turn.end
