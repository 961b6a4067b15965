"""Redaction of quoted text: people, places, organisations, contact details and identifiers become tags.

Two sources of spans, merged: fixed patterns for what a named-entity model
misses (emails, phone numbers, NHS and hospital numbers, postcodes, street
addresses, full dates such as a date of birth) and spaCy's named entities,
found line by line (a tag never swallows a line break or the next turn's
label); beside them, every speaker label that is a name, in any case.
Speaker labels that are names become ``Speaker N`` per document
(:func:`pseudonyms`), in a text too, where the label opens a turn
(:func:`label_spans`).
"""

from __future__ import annotations

import bisect
import re
from typing import Callable, Iterable, Mapping

import pandas as pd
from spacy.lang.en.stop_words import STOP_WORDS

from .segment import SPACY_MODEL
from .transcripts import TIMESTAMP

LABELS = {"PERSON": "[PERSON]", "GPE": "[PLACE]", "LOC": "[PLACE]", "FAC": "[PLACE]", "ORG": "[ORG]"}
_TITLES = re.compile(r"^(?:dr|mr|mrs|ms|miss|mx|prof|professor|cllr|rev)\.?\s+", re.IGNORECASE)
# Words of speaker labels that name a part in the conversation, not a person ("Support Worker", "Service User 2").
ROLE_WORDS = frozenset("""
    interviewer int i q a r resp respondent participant facilitator moderator speaker p unknown researcher
    interviewee observer chair note taker notetaker carer parent mum mother dad father patient client service
    user users nurse doctor psychiatrist psychologist therapist manager staff worker support peer clinician
    commissioner governor member family relative son daughter wife husband partner friend advocate social lead
    team leader officer chief executive consultant director other group all several audience unidentified male
    female voice person both everyone multiple crosstalk
""".split())
# Organisation names that identify nobody and carry meaning for coding (acronyms of services and bodies).
KEEP_ORGS = frozenset("""
    nhs cbt dbt cmht cpa cpn gp gps a&e iapt ccg ccgs icb icbs cqc nice mdt pals ect mha crht ehi eip ot
    healthwatch
""".split())
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_STREET = (r"(?:Road|Rd|Street|St|Avenue|Ave|Lane|Close|Drive|Way|Crescent|Place|Court|Gardens|Terrace|Grove|"
           r"Row|Square|Walk|Mews|Parade|Rise|View)")
PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("[EMAIL]", re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)),
    ("[DATE]", re.compile(rf"\b(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?"
                          rf"{_MONTH}\.?,?\s+\d{{4}}|{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})\b", re.IGNORECASE)),
    ("[POSTCODE]", re.compile(r"\b[a-z]{1,2}\d[a-z\d]?\s?\d[a-z]{2}\b", re.IGNORECASE)),
    ("[ADDRESS]", re.compile(rf"\b\d{{1,4}}[a-zA-Z]?,?\s+(?:[A-Z][\w'’-]*\s+){{1,3}}{_STREET}\b")),  # capitalised
    ("[ID]", re.compile(r"\b[a-z]{1,3}\d{6,}\b", re.IGNORECASE)),  # hospital numbers such as RX1234567
)
# A run of digits with spaces, dots, dashes or brackets between: a phone number, an NHS number or another id.
_NUMBER = re.compile(r"(?<![\w.,/+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,6}(?:[\s.-]\d{2,6}){0,4}(?![\w/]|[.,]\d)")
_LABEL = re.compile(r"^\s*[^:\n]{1,40}:\s")  # a leading speaker label, left out when judging a line's case
_MAX_PIECE = 100_000  # characters per named-entity call: far below spaCy's limit, whatever the line
# What may stand between a speaker label and the turn's first word: spaces, line breaks, label punctuation, timestamps.
_LABEL_TAIL = rf"(?:\s|[\]):\-–—>]|{TIMESTAMP.pattern})*\Z"
_LABEL_HEAD = re.compile(rf"(?:\s|[\[(<]|{TIMESTAMP.pattern})*")  # what may stand before a label on its line
_LABEL_REACH = 200  # characters before a turn searched for its label
Span = tuple[int, int, str]


def _number_tag(s: str) -> str | None:
    """[PHONE] for 9-15 digits starting + or 0, [ID] for any other run of 8 or more digits; else None."""
    digits = sum(ch.isdigit() for ch in s)
    s = s.lstrip("(")
    if s.startswith("+") or (s.startswith("0") and digits >= 9):
        return "[PHONE]" if 9 <= digits <= 15 else None
    return "[ID]" if digits >= 8 else None


def _fold(name: str) -> str:
    """A name as compared: words single-spaced, one kind of apostrophe, lower case."""
    return " ".join(name.split()).replace("’", "'").lower()


def _words(label: str) -> list[str]:
    return re.findall(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", _TITLES.sub("", label))


def is_name(label: str) -> bool:
    """True for speaker labels that look like a person's name (not R, P3, Interviewer, Support Worker...)."""
    words = [w.lower().strip("'’-") for w in _words(str(label).strip())]
    return bool(words) and not all(w in ROLE_WORDS for w in words)


def _name_pattern(name: str) -> str:
    return r"\s+".join(re.escape(w).replace("'", "['’]").replace("’", "['’]") for w in name.split())


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """(start, piece) for each line, long lines cut at a space into pieces of at most ``_MAX_PIECE`` characters."""
    pos = 0
    for line in text.split("\n"):
        start = pos
        pos += len(line) + 1
        while len(line) > _MAX_PIECE:
            cut = line.rfind(" ", 0, _MAX_PIECE)
            cut = cut if cut > 0 else _MAX_PIECE
            yield start, line[:cut]
            start, line = start + cut, line[cut:]
        if line.strip():
            yield start, line


def _caseless_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of the lines whose words, after a leading speaker label, begin in lower case (speech-to-text)."""
    out, pos = [], 0
    for line in text.split("\n"):
        first = next((ch for ch in _LABEL.sub("", line, count=1) if ch.isalpha()), "")
        if first.islower():
            out.append((pos, pos + len(line)))
        pos += len(line) + 1
    return out


class Redactor:
    """Replace contact details, identifiers, named entities (spaCy NER) and known names (speaker labels).

    ``redactor(text)`` gives the redacted text; ``redactor.with_offsets(text)``
    also gives a function mapping offsets in the old text to the new one, so
    spans (REFI-QDA selections) can follow. A name of two words or more is
    matched in any case; one word ("Dave" of "Dave Hughes", or a label "Jo")
    when capitalised, or in any case on a line that begins in lower case
    (speech-to-text output), unless it is a common word ("will" of Will).
    """

    def __init__(self, names: Iterable[str] = (), nlp=None):
        import spacy

        self.nlp = nlp or spacy.load(SPACY_MODEL, exclude=["lemmatizer", "parser", "senter"])
        whole, parts = set(), set()  # names of two words or more (any case); single words (capitalised)
        for n in names:
            n = " ".join(str(n).split())
            if not is_name(n):
                continue
            whole.update(w for w in (n, _TITLES.sub("", n)) if len(w.split()) > 1)
            parts.update(w for w in _words(n) if len(w) > 1 and w.lower() not in ROLE_WORDS)
        self._whole = {_fold(w) for w in whole}
        ordered = sorted(whole | parts, key=lambda w: (-len(w), w))
        self.names = re.compile(r"(?<!\w)(?:" + "|".join(map(_name_pattern, ordered)) + r")(?!\w)",
                                re.IGNORECASE) if ordered else None

    is_name = staticmethod(is_name)

    def _name_spans(self, text: str) -> list[tuple[int, int, str]]:
        if self.names is None:
            return []
        caseless = _caseless_lines(text)
        starts = [s for s, _ in caseless]

        def in_caseless(p: int) -> bool:
            k = bisect.bisect_right(starts, p) - 1
            return k >= 0 and p < caseless[k][1]

        out = []
        for m in self.names.finditer(text):
            word = m.group()
            if _fold(word) in self._whole or word[0].isupper() or \
                    (in_caseless(m.start()) and word.lower() not in STOP_WORDS):  # "will" of Will: only as Will
                out.append((m.start(), m.end(), "[PERSON]"))
        return out

    def _entity_spans(self, text: str) -> list[tuple[int, int, str]]:
        pieces = list(_lines(text))
        out = []
        for (start, _), doc in zip(pieces, self.nlp.pipe(p for _, p in pieces)):
            for e in doc.ents:
                if e.label_ not in LABELS:
                    continue
                if e.label_ == "ORG" and re.sub(r"^the\s+", "", e.text.lower()) in KEEP_ORGS:
                    continue
                out.append((start + e.start_char, start + e.end_char, LABELS[e.label_]))
        return out

    def spans(self, text: str, fixed: Iterable[Span] = ()) -> list[Span]:
        """Sorted, non-overlapping (start, end, tag) to replace; patterns win over entities where they overlap.

        ``fixed`` spans (speaker labels and their pseudonyms, :func:`label_spans`) win over everything found, and
        timestamps identify nobody: what is found overlapping either is cut back to its words outside it."""
        fixed = sorted(fixed)
        found = [(m.start(), m.end(), tag) for tag, rx in PATTERNS for m in rx.finditer(text)]
        found += [(m.start(), m.end(), tag) for m in _NUMBER.finditer(text) if (tag := _number_tag(m.group()))]
        found += self._name_spans(text) + self._entity_spans(text)
        kept = fixed + [(m.start(), m.end(), "") for m in TIMESTAMP.finditer(text)]
        out: list[Span] = []
        for s, e, tag in sorted(_outside(text, found, kept), key=lambda x: (x[0], -(x[1] - x[0]))):
            if out and s < out[-1][1]:
                if e > out[-1][1]:
                    out[-1] = (out[-1][0], e, out[-1][2])
                continue
            out.append((s, e, tag))
        return sorted(out + fixed)

    def with_offsets(self, text: str, fixed: Iterable[Span] = ()) -> tuple[str, Callable[[int], int]]:
        """The redacted text and a map from offsets in ``text`` to offsets in it; ``fixed`` as in :meth:`spans`."""
        spans = self.spans(text, fixed)
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


def _outside(text: str, spans: Iterable[Span], kept: list[Span]) -> list[Span]:
    """``spans`` cut back to their words outside every ``kept`` span (a piece with no word is dropped)."""
    merged: list[list[int]] = []
    for ks, ke, _ in sorted(kept):
        if merged and ks <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], ke)
        else:
            merged.append([ks, ke])
    ends = [ke for _, ke in merged]
    out = []
    for s, e, tag in spans:
        pieces, k = [(s, e)], bisect.bisect_right(ends, s)
        while k < len(merged) and merged[k][0] < e:
            fs, fe = merged[k]
            pieces = [p for a, b in pieces for p in ((a, min(b, fs)), (max(a, fe), b)) if p[0] < p[1]]
            k += 1
        if pieces == [(s, e)]:
            out.append((s, e, tag))
            continue
        for a, b in pieces:
            words = re.search(r"\w(?:.*\w)?", text[a:b], re.S)
            if words:
                out.append((a + words.start(), a + words.end(), tag))
    return out


def label_spans(text: str, turns: Iterable[tuple[str, int]], shown: Mapping[str, str]) -> list[Span]:
    """(start, end, replacement) of the speaker label opening each turn, for :meth:`Redactor.spans`.

    ``turns``: (speaker, offset of the turn's first word in ``text``); ``shown``: speaker -> pseudonym (one
    document's :func:`pseudonyms`); a label not in it (Interviewer, Nurse, P3) is kept as written. A label is
    the speaker's words as the transcript writes them (any spaces between), with only spaces, brackets and
    timestamps before it on its line and only spaces, line breaks, label punctuation and timestamps after it up
    to the turn: ``Jo Baker:``, ``[00:01] Jo Baker:``, ``[Jo Baker]``, ``Jo Baker 0:03`` on the line before.
    A turn with no such label (its speaker goes on after a timestamp) has none.
    """
    out = set()
    for speaker, start in turns:
        words = r"[ \t]+".join(map(re.escape, speaker.split()))
        if not words:
            continue
        m = re.compile(rf"(?<!\w){words}(?!\w)(?={_LABEL_TAIL})").search(text, max(0, start - _LABEL_REACH), start)
        if m and _LABEL_HEAD.fullmatch(text, text.rfind("\n", 0, m.start()) + 1, m.start()):
            out.add((m.start(), m.end(), shown.get(speaker, m.group())))
    return sorted(out)


def pseudonyms(speakers: pd.DataFrame) -> Mapping[tuple[str, str], str]:
    """(doc_id, speaker) -> ``Speaker N`` for each speaker label that is a name, numbered per document.

    Numbers already used by a document's own ``Speaker N`` labels are skipped,
    so two people never share a pseudonym. Labels that are not names are absent.
    """
    out: dict[tuple[str, str], str] = {}
    for doc_id, sub in speakers[["doc_id", "speaker"]].astype(str).drop_duplicates().groupby("doc_id", sort=True):
        labels = sorted(set(sub["speaker"]))
        taken = {int(m.group(1)) for s in labels if (m := re.fullmatch(r"speaker\s*(\d+)", s.strip(), re.IGNORECASE))}
        k = 0
        for s in (s for s in labels if is_name(s)):
            k += 1
            while k in taken:
                k += 1
            out[(str(doc_id), s)] = f"Speaker {k}"
    return out
