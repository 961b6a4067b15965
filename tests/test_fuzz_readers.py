"""Fuzzing the transcript readers: nothing escapes but the tool's own clear errors."""

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from discourse.errors import DiscourseError
from discourse.transcripts import read_transcripts

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

TEXTY = st.lists(st.one_of(st.text(alphabet=st.sampled_from(list(string.printable) + ["é", "’", "—", "\u2028", "\x00", "\ufeff", "漢", "<", ">"]), max_size=40), st.sampled_from(["-->", "<v Ann>", "</v>", "R: ", "[00:01:02] ", "\n\n"])), max_size=12).map("".join)


def check(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    try:
        docs = read_transcripts(p)
    except DiscourseError as exc:
        assert name in str(exc)
        return
    for d in docs:
        for r in d.turns.itertuples():
            assert d.text[r.start:r.end] == r.text


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["f.txt", "f.vtt", "f.srt", "f.csv", "f.docx"]))
@example(b"PK", "f.docx")  # found by fuzzing: python-docx's own 'package not found' error
@example(b"", "f.docx")
def test_random_bytes(tmp_path, data, name):
    check(tmp_path, name, data)


@FUZZ
@given(TEXTY, st.sampled_from(["f.txt", "f.vtt", "f.srt", "f.csv"]))
def test_random_text(tmp_path, text, name):
    check(tmp_path, name, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000), TEXTY), max_size=8), st.booleans())
def test_subtitle_like_text(tmp_path, cues, vtt):
    def stamp(ms):
        sep = "." if vtt else ","
        return f"00:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"

    body = "\n\n".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{t}" for i, (a, b, t) in enumerate(cues))
    check(tmp_path, "f.vtt" if vtt else "f.srt", (("WEBVTT\n\n" if vtt else "") + body).encode("utf-8", "surrogatepass"))
