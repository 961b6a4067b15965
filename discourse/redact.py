"""Redaction of quoted excerpts: names, places and organisations become [PERSON], [PLACE], [ORG]."""

from __future__ import annotations

import re
from typing import Iterable

from .segment import SPACY_MODEL

LABELS = {"PERSON": "[PERSON]", "GPE": "[PLACE]", "LOC": "[PLACE]", "FAC": "[PLACE]", "ORG": "[ORG]", "NORP": None}
_TITLES = re.compile(r"^(?:dr|mr|mrs|ms|miss|mx|prof|professor|cllr|rev)\.?\s+", re.IGNORECASE)
_GENERIC = re.compile(r"^(?:interviewer|int|i|q|r|resp|respondent|participant|facilitator|moderator|speaker|p)\s*\d*$", re.IGNORECASE)


class Redactor:
    """Replace named entities (spaCy NER) and known names (e.g. from the speaker table)."""

    def __init__(self, names: Iterable[str] = (), nlp=None):
        import spacy

        self.nlp = nlp or spacy.load(SPACY_MODEL, exclude=["lemmatizer", "parser", "senter"])
        parts = set()
        for n in names:
            n = str(n).strip()
            if not n or _GENERIC.match(n):
                continue
            parts.add(n)
            bare = _TITLES.sub("", n)
            parts.update(w for w in bare.split() if len(w) > 2 and w[0].isupper())
        self.names = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True)) + r")\b") if parts else None

    def __call__(self, text: str) -> str:
        doc = self.nlp(text)
        out, pos = [], 0
        for ent in doc.ents:
            tag = LABELS.get(ent.label_)
            if tag:
                out.append(text[pos:ent.start_char])
                out.append(tag)
                pos = ent.end_char
        out.append(text[pos:])
        red = "".join(out)
        if self.names is not None:
            red = self.names.sub("[PERSON]", red)
        return red
