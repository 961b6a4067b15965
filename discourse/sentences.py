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

# a sentence ends at . ! ? (and closing quotes or brackets), before a space and a capital, digit or quote
_END = re.compile(r"[.!?]+[\"'\u2019\u201d)\]]*\s+(?=[\"'\u2018\u201c(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|Cllr|No|vs|etc|e\.g|i\.e)\.$")
MIN_WORDS = 3  # a shorter piece ("Yes.", "We went.") joins the sentence after it (the last: before it)


def split_sentences(text: str, min_words: int = MIN_WORDS) -> list[str]:
    """The excerpt's sentences, each of at least ``min_words`` words where the text allows."""
    pieces, start = [], 0
    for m in _END.finditer(text):
        if _ABBREVIATION.search(text[start:m.end()].rstrip()):
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
