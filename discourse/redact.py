"""Redaction of quoted text: names, places and organisations become [PERSON], [PLACE], [ORG]."""

from __future__ import annotations

import bisect
import re
from typing import Callable, Iterable

from .segment import SPACY_MODEL

LABELS = {"PERSON": "[PERSON]", "GPE": "[PLACE]", "LOC": "[PLACE]", "FAC": "[PLACE]", "ORG": "[ORG]"}
_TITLES = re.compile(r"^(?:dr|mr|mrs|ms|miss|mx|prof|professor|cllr|rev)\.?\s+", re.IGNORECASE)
_GENERIC = re.compile(r"^(?:interviewer|int|i|q|r|resp|respondent|participant|facilitator|moderator|speaker|p|unknown)\s*\d*$",
                      re.IGNORECASE)


class Redactor:
    """Replace named entities (spaCy NER) and known names (e.g. speaker labels).

    ``redactor(text)`` gives the redacted text; ``redactor.with_offsets(text)``
    also gives a function mapping offsets in the old text to the new one, so
    spans (REFI-QDA selections) can follow.
    """

    def __init__(self, names: Iterable[str] = (), nlp=None):
        import spacy

        self.nlp = nlp or spacy.load(SPACY_MODEL, exclude=["lemmatizer", "parser", "senter"])
        parts = set()
        for n in names:
            n = str(n).strip()
            if not self.is_name(n):
                continue
            parts.add(n)
            parts.update(w for w in _TITLES.sub("", n).split() if len(w) > 2 and w[0].isupper())
        ordered = sorted(parts, key=len, reverse=True)
        self.names = re.compile(r"\b(?:" + "|".join(map(re.escape, ordered)) + r")\b") if parts else None

    @staticmethod
    def is_name(label: str) -> bool:
        """True for speaker labels that look like a person's name (not R, P3, Interviewer...)."""
        return bool(label) and not _GENERIC.match(label) and any(ch.isalpha() for ch in label) and len(label) > 2

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Sorted, non-overlapping (start, end, tag) to replace."""
        found = [(e.start_char, e.end_char, LABELS[e.label_]) for e in self.nlp(text).ents if e.label_ in LABELS]
        if self.names is not None:
            found += [(m.start(), m.end(), "[PERSON]") for m in self.names.finditer(text)]
        out: list[tuple[int, int, str]] = []
        for s, e, tag in sorted(found, key=lambda x: (x[0], -(x[1] - x[0]))):
            if out and s < out[-1][1]:
                if e > out[-1][1]:
                    out[-1] = (out[-1][0], e, out[-1][2])
                continue
            out.append((s, e, tag))
        return out

    def with_offsets(self, text: str) -> tuple[str, Callable[[int], int]]:
        spans = self.spans(text)
        pieces, pos, old_starts, new_starts, old_ends, new_ends, shift = [], 0, [], [], [], [], 0
        for s, e, tag in spans:
            pieces += [text[pos:s], tag]
            old_starts.append(s)
            old_ends.append(e)
            new_starts.append(s + shift)
            shift += len(tag) - (e - s)
            new_ends.append(e + shift)
            pos = e
        pieces.append(text[pos:])

        def newpos(p: int) -> int:
            k = bisect.bisect_right(old_starts, p) - 1
            if k < 0:
                return p
            if p == old_starts[k]:
                return new_starts[k]
            if p < old_ends[k]:  # inside a replaced name: to its end
                return new_ends[k]
            return p + (new_ends[k] - old_ends[k])

        return "".join(pieces), newpos

    def __call__(self, text: str) -> str:
        return self.with_offsets(text)[0]
