"""Sentence-level embedding features: an excerpt's sentences, embedded one by one and max-pooled.

An excerpt often carries a second framing in one sentence or clause (a user
trainer who knows what staff do not, *and* says the days of being decided for
are over). Its whole-excerpt embedding is dominated by the main framing; the
elementwise maximum over its sentences' embeddings keeps the second one
visible. The classifier sees both, side by side (docs/model-selection.md).

>>> split_sentences("We sat on the board. It meant power, for once. Yes.")
['We sat on the board.', 'It meant power, for once. Yes.']
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

# a sentence ends at . ! ? or … (and closing quotes or brackets), before a space and a letter or digit (perhaps
# after an opening quote or bracket); ``_ends_sentence`` then asks for a capital (any script) or a digit
_CLOSE = "\"'\u2019\u201d\u00bb\u00ab\u203a\u2039)\\]"
_OPEN = "\"'\u2018\u201c\u201e\u00ab\u00bb\u2039\u203a(\\["
_END = re.compile(rf"[.!?\u2026]+[{_CLOSE}]*\s+(?=[{_OPEN}]*(?P<next>\w+))")
_LETTER = r"[^\W\d_]"
_INITIALISM = re.compile(rf"(?:{_LETTER}\.)+{_LETTER}")  # "U.S", "p.m", "e.g"
_LAST_WORD = re.compile(rf"(?<![\w.])({_INITIALISM.pattern}|\w+)\.$")  # "Dr." -> "Dr", "U.S." -> "U.S"
# never end a sentence; matched in any case, though an all-capital word (MS, ST) is an acronym, not one of these
_TITLES = {"dr", "mr", "mrs", "ms", "mx", "prof", "rev", "fr", "st", "cllr", "sgt", "capt", "hon", "vs", "cf", "viz",
           "approx", "e.g", "i.e"}
_BEFORE_NUMBER = {"no", "nos", "vol", "fig", "pp"}  # "No. 10", but "The answer was No. We never..." ends
# after "etc." or an initialism ("U.S.", "p.m."), a sentence ends only if one of these words follows
_STARTERS = {"I", "We", "He", "She", "It", "They", "You", "The", "This", "That", "There", "Then", "And", "But", "So",
             "Now"}
MIN_WORDS = 3  # a shorter piece ("Yes.", "We went.") joins the sentence after it (the last: before it)


def _ends_sentence(piece: str, following: str) -> bool:
    """Whether ``piece`` (with its final punctuation) ends a sentence when the word ``following`` comes next."""
    if not (following[0].isupper() or following[0].istitle() or following[0].isdecimal()):
        return False
    m = _LAST_WORD.search(piece)
    if m is None:
        return True
    word = m.group(1)
    if len(word) > 1 and word.isupper() and "." not in word:
        return True  # an acronym: "I have MS. It ..."
    key = word.lower()
    if key in _TITLES:
        return False
    if key in _BEFORE_NUMBER:
        return not following[0].isdecimal()
    if key == "etc" or _INITIALISM.fullmatch(word):
        return following in _STARTERS
    return True


def split_sentences(text: str, min_words: int = MIN_WORDS) -> list[str]:
    """The excerpt's sentences, each of at least ``min_words`` words where the text allows."""
    pieces, start = [], 0
    for m in _END.finditer(text):
        if not _ends_sentence(text[start:m.end()].rstrip(), m.group("next")):
            continue
        pieces.append(text[start:m.end()].strip())
        start = m.end()
    pieces.append(text[start:].strip())
    return join_short(pieces, min_words) or [text]


def join_short(pieces: Sequence[str], min_words: int) -> list[str]:
    """Non-empty ``pieces``, each under ``min_words`` words joined to the one after it (the last: before it)."""
    merged: list[str] = []
    for piece in filter(None, pieces):
        if merged and len(merged[-1].split()) < min_words:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    if len(merged) > 1 and len(merged[-1].split()) < min_words:
        merged[-2:] = [f"{merged[-2]} {merged[-1]}"]
    return merged


def sentence_index(texts: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """The distinct sentences of ``texts`` (sorted) and, per text, the positions of its sentences."""
    per_text = [split_sentences(t) for t in texts]
    distinct = sorted({s for ss in per_text for s in ss})
    where = {s: i for i, s in enumerate(distinct)}
    return distinct, [[where[s] for s in ss] for ss in per_text]


def max_pool(sentence_vectors: np.ndarray, index: Sequence[Sequence[int]]) -> np.ndarray:
    """Per text, the elementwise maximum of its sentences' vectors."""
    if not len(index):
        return np.zeros((0, sentence_vectors.shape[1]), dtype=np.float32)
    return np.stack([sentence_vectors[list(ix)].max(axis=0) for ix in index]).astype(np.float32)


def with_sentence_max(texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """``[excerpt embedding | max over its sentence embeddings]``, from one ``embed`` call over both."""
    texts = list(texts)
    distinct, index = sentence_index(texts)
    E = embed(texts + distinct)
    return np.hstack([E[: len(texts)], max_pool(E[len(texts):], index)])
