"""Read interview transcripts (.txt, .docx, .vtt, .srt, .csv) into a *turns* table.

Every turn keeps ``start``/``end`` character offsets into the document's
canonical text, so ``transcript.text[start:end] == turn text`` always holds.
The canonical text of a ``.txt`` file is the file itself (decoded); for other
formats it is the plain text the reader extracts, which callers save beside
their outputs so the offsets stay checkable.

Turns table columns: doc_id, turn, speaker, text, start, end.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import html
import io
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import DiscourseError
from .tables import header_separator, shown

TURN_COLUMNS = ["doc_id", "turn", "speaker", "text", "start", "end"]
FORMATS = (".txt", ".docx", ".vtt", ".srt", ".csv")
MAX_FILE_BYTES = 20 * 1024 * 1024  # an hour-long interview is ~100 KB

UNKNOWN_SPEAKER = "unknown"

# --- speaker labels -----------------------------------------------------------

_TS = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?"
TIMESTAMP = re.compile(rf"\[\s*{_TS}\s*\]|\(\s*{_TS}\s*\)|(?<![\w:]){_TS}(?![\w:])")
_LEAD_TS = re.compile(rf"[ \t]*(?:(?:\[\s*{_TS}\s*\]|\(\s*{_TS}\s*\)|{_TS})[ \t]*[-–—]?[ \t]*)+")
# A label's words start with a capital (or are a number); `A&E`, `Carer/Parent` are one word. Words are
# separated by spaces, a comma (`Mr Smith, Carer`), or `&` or `/` between spaces; a label may end in a short
# part in brackets (`Nurse (Band 6)`, `Interviewer (KL)`): see :func:`label_base`.
_WORD = r"[A-ZÀ-ÖØ-Þ][\w'’.\-]*(?:[&/]\w[\w'’.\-]*)*|\d{1,3}"
_SEP = r"(?:,?[ \t]+|[ \t]+[&/][ \t]+)"
_TITLE = r"(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Cllr|Rev)\.?"
_NAME = rf"(?:{_TITLE}[ \t]+)?(?:{_WORD})(?:{_SEP}(?:{_WORD})){{0,3}}"
_PART = rf"\((?:[^()\n:]{{1,30}}|[ \t]*{_TS}[ \t]*)\)"  # `(Band 6)`, `(laughs)`, `(00:12)`
_COLON_LABEL = re.compile(rf"(?P<label>{_NAME}(?:[ \t]*{_PART})?)[ \t]*:(?![\d/])[ \t]*")
_TRAILING_PART = re.compile(r"[ \t]*\((?P<part>[^()]*)\)$")
_BRACKET_LABEL = re.compile(r"\[(?P<label>[A-Za-z][\w'’. \-]{0,39})\][ \t]*:?[ \t]*")
_DASH_LABEL = re.compile(r"(?P<label>[A-Z][A-Z0-9]{0,11}(?:[ \t][A-Z0-9]{1,11})?)[ \t]+[-–—][ \t]+")
_OTTER_LABEL = re.compile(rf"(?P<label>(?:{_TITLE}[ \t]+)?(?:{_WORD})(?:[ \t]+(?:{_WORD})){{0,3}})[ \t]+{_TS}[ \t]*$")

# Bracketed transcription conventions are never speaker labels.
CONVENTIONS = {
    "inaudible", "laughs", "laughter", "laughing", "pause", "pauses", "long pause",
    "crosstalk", "cross talk", "silence", "unclear", "overlapping", "overtalking",
    "sighs", "coughs", "break", "interruption", "redacted", "name", "indistinct",
    "background noise", "phone rings", "recording paused", "recording resumed", "end",
}
# Labels accepted on first sight; any other label must occur twice or be known.
_KNOWN_LABEL = re.compile(
    r"^(?:interviewer|int|i|q|a|r|resp|respondent|participant(?: \d+)?|p ?\d+|speaker ?\d+|"
    r"facilitator|moderator|researcher|interviewee|(?:dr|mr|mrs|ms|miss|mx|prof|professor|cllr|rev)\.? .+)$",
    re.IGNORECASE,
)
INTERVIEWER_LABELS = re.compile(
    r"^(?:interviewer|int|i|q|facilitator|moderator|researcher|interviewer ?\d+)$", re.IGNORECASE
)


@dataclass(frozen=True)
class Transcript:
    """One document: its canonical text and its turns."""

    doc_id: str
    path: str
    format: str
    text: str
    turns: pd.DataFrame
    sha256: str
    warnings: tuple[str, ...] = field(default=())


# --- decoding -----------------------------------------------------------------


def decode_bytes(data: bytes, path: str | os.PathLike) -> tuple[str, list[str]]:
    """Decode transcript bytes: UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252 with a warning."""
    if not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise DiscourseError("the file is empty", path)
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), []
        except UnicodeDecodeError as exc:
            raise DiscourseError(f"starts with a UTF-8 mark but byte {exc.start} is not UTF-8", path) from None
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(enc), []
            except UnicodeDecodeError:
                raise DiscourseError("starts with a UTF-16 mark but is not valid UTF-16", path) from None
    if b"\x00" in data[:8192]:
        raise DiscourseError("this looks like a binary file, not a text transcript", path)
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise DiscourseError(
            "text is neither UTF-8, UTF-16 nor Windows-1252: re-save it as UTF-8", path
        ) from None
    return text, [f"{path}: not UTF-8; read as Windows-1252 (cp1252): check accented characters"]


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DiscourseError("file not found", path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DiscourseError(
            f"file is {size / 1e6:.0f} MB; transcripts over {MAX_FILE_BYTES // (1024 * 1024)} MB are refused"
            " (split it into one file per interview)",
            path,
        )
    return path.read_bytes()


# --- plain text -----------------------------------------------------------------


def _match_label(line: str, pos: int) -> tuple[str, int] | None:
    """If a speaker label starts at ``pos``, return (label, position after it)."""
    for rx in (_BRACKET_LABEL, _DASH_LABEL, _COLON_LABEL):
        m = rx.match(line, pos)
        if not m:
            continue
        label = _speaker_of(m.group("label"))
        if label.lower() in CONVENTIONS or TIMESTAMP.fullmatch(label):
            continue
        if len(label) > 40:
            continue
        if rx is _DASH_LABEL and _says_again(label, line[m.end():]):
            continue  # "I - I wasn't sure": a stammer in the speech, not a speaker
        return label, m.end()
    return None


def _speaker_of(label: str) -> str:
    """The speaker a label names, spaces tidied: the whole label (``Nurse (Band 6)``), but without a bracketed
    transcription note or timestamp (``R (laughs)``, ``R (00:12)`` are ``R``)."""
    label = " ".join(label.split())
    part = _TRAILING_PART.search(label)
    inner = part.group("part").strip().lower() if part else ""
    if part and part.start() and (inner in CONVENTIONS or re.fullmatch(_TS, inner)):
        return label[:part.start()]
    return label


def label_base(label: str) -> str:
    """A label without its bracketed part: ``Interviewer (KL)`` is an ``Interviewer``."""
    part = _TRAILING_PART.search(label.strip())
    return label.strip()[:part.start()] if part and part.start() else label.strip()


def _says_again(label: str, rest: str) -> bool:
    """Whether the words after a dash begin with the label's own word, as when a speaker repeats themselves."""
    first = re.match(r"[\w'’]+", rest)
    return bool(first) and first.group(0).lower() == label.split()[-1].lower()


def _lines(text: str):
    """Yield (line_start, line_without_newline)."""
    pos = 0
    for raw in text.splitlines(keepends=True):
        yield pos, raw.rstrip("\r\n")
        pos += len(raw)


def _content_pieces(text: str, line_start: int, line: str, pos: int) -> list[tuple[int, int]]:
    """Spans of ``line[pos:]`` with timestamps cut out, as absolute offsets, whitespace-trimmed."""
    pieces, cur = [], pos
    for m in TIMESTAMP.finditer(line, pos):
        pieces.append((cur, m.start()))
        cur = m.end()
    pieces.append((cur, len(line)))
    out = []
    for a, b in pieces:
        seg = line[a:b]
        stripped = seg.strip()
        if not stripped:
            continue
        a2 = a + (len(seg) - len(seg.lstrip()))
        b2 = a2 + len(stripped)
        out.append((line_start + a2, line_start + b2))
    return out


@dataclass(frozen=True)
class _Line:
    """One line of a plain transcript and the label it starts with, if any."""

    number: int  # from 1
    start: int  # offset of the line in the text
    text: str  # without its line break
    label: str | None
    lead: int  # where the line's words start after any leading timestamp
    after: int  # where they start after the label, if the label is taken
    otter: bool  # an Otter ``Name  0:03`` line


def _label_lines(text: str) -> list[_Line]:
    """Every line of ``text`` with the speaker label it starts with (accepted or not)."""
    out = []
    for number, (start, line) in enumerate(_lines(text), 1):
        m = _LEAD_TS.match(line)
        lead = m.end() if m else 0
        otter = _OTTER_LABEL.match(line, lead)
        hit = None if otter else _match_label(line, lead)
        label = otter.group("label") if otter else (hit[0] if hit else None)
        out.append(_Line(number, start, line, label, lead, hit[1] if hit else lead, bool(otter)))
    return out


def parse_text_turns(
    text: str, doc_id: str, known_speakers: set[str] | None = None, source: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Split plain transcript text into turns by speaker labels.

    A label is accepted when it is a usual interview label (Interviewer, R, P3,
    Dr Smith..., also with a bracketed part: Interviewer (KL)), is listed in
    ``known_speakers``, or occurs at least twice.
    Lines without a label continue the previous speaker's turn; a timestamp
    inside a turn ends it and the same speaker's next words start a new turn.
    A line that starts with a label seen only once is read as the current
    speaker's words; words before the first label are nobody's turn. Warnings
    naming ``source`` (default: ``doc_id``) say so, with the lines.
    """
    known = {s.lower() for s in (known_speakers or ())}
    lines = _label_lines(text)
    counts = Counter(line.label for line in lines if line.label)

    def accepted(label: str) -> bool:
        return bool(_KNOWN_LABEL.match(label_base(label))) or label.lower() in known or counts[label] >= 2

    taken = [bool(line.label) and accepted(line.label) for line in lines]
    if not any(taken):
        rows, _, _ = _turn_rows(text, lines, taken, UNKNOWN_SPEAKER)
        return _turns_frame(text, doc_id, rows), [
            f"{doc_id}: no speaker labels found; read as one speaker '{UNKNOWN_SPEAKER}'"]
    rows, unread, absorbed = _turn_rows(text, lines, taken, None)
    warnings = [_unread_warning(source or doc_id, unread)] if unread else []
    if absorbed:
        warnings.append(_absorbed_warning(source or doc_id, absorbed))
    return _turns_frame(text, doc_id, rows), warnings


def _turn_rows(text: str, lines: list[_Line], taken: list[bool], speaker: str | None
               ) -> tuple[list[list], list[tuple[int, int]], list[tuple[int, str, str, int, bool]]]:
    """Turns as [speaker, start, end] rows, starting with ``speaker`` (None: nobody until a label is taken).

    Also returns the lines before the first label, as (line number, words), and the label-like lines read as
    speech, as (line number, label, speaker, turn, whether it joined that turn rather than starting it).
    """
    rows: list[list] = []
    unread: list[tuple[int, int]] = []
    absorbed: list[tuple[int, str, str, int, bool]] = []
    pending_new = False
    for line, took in zip(lines, taken):
        if took:
            speaker, pending_new = " ".join(line.label.split()), True
        if line.otter and pending_new:
            continue
        pieces = _content_pieces(text, line.start, line.text, line.after if took else line.lead)
        if speaker is None:
            unread += [(line.number, len(text[a:b].split())) for a, b in pieces]
            continue
        for k, (a, b) in enumerate(pieces):
            joins = bool(rows) and not pending_new and rows[-1][0] == speaker and not text[rows[-1][2]:a].strip()
            if joins:
                rows[-1][2] = b
            else:
                rows.append([speaker, a, b])
            pending_new = False
            if k == 0 and line.label and not took:
                absorbed.append((line.number, line.label, speaker, len(rows) - 1, joins))
    return rows, unread, absorbed


def _unread_warning(source: str, unread: list[tuple[int, int]]) -> str:
    """One warning for the words before a document's first speaker label, which are no one's turn."""
    first, last = unread[0][0], unread[-1][0]
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    return (f"{source}: {sum(n for _, n in unread)} word(s) before the first speaker label ({lines}) were not read "
            "as anyone's turn and are not coded; if they are speech, start them with a speaker label")


def _absorbed_warning(source: str, absorbed: list[tuple[int, str, str, int, bool]], show: int = 5) -> str:
    """One warning for the label-like lines of a document read as speech rather than as new speakers."""
    def what(speaker: str, turn: int, joined: bool) -> str:
        return f"part of {speaker}'s turn {turn}" if joined else f"a new turn of {speaker} (turn {turn})"

    if len(absorbed) == 1:
        number, label, speaker, turn, joined = absorbed[0]
        return (f"{source}: line {number} starts like a speaker label ('{label}') seen only once, so it was read "
                f"as {what(speaker, turn, joined)}; if {label} is a speaker, add them to the speaker table (if the "
                "label is misspelt, correct it in the transcript)")
    shown = ", ".join(f"{n} ('{label}': {what(s, t, j)})" for n, label, s, t, j in absorbed[:show])
    more = f" and {len(absorbed) - show} more" if len(absorbed) > show else ""
    return (f"{source}: lines {shown}{more} start like speaker labels seen only once, so they were read as the "
            "words of the speaker before them; add any that are speakers to the speaker table (correct any "
            "misspelt label in the transcript)")


def _turns_frame(text: str, doc_id: str, rows: list[list]) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "doc_id": doc_id,
            "turn": list(range(len(rows))),
            "speaker": [r[0] for r in rows],
            "text": [text[r[1]:r[2]] for r in rows],
            "start": [r[1] for r in rows],
            "end": [r[2] for r in rows],
        },
        columns=TURN_COLUMNS,
    )
    return df.astype({"turn": "int64", "start": "int64", "end": "int64"})


# --- rendered formats (docx, vtt/srt, csv) ------------------------------------------


def _render(turns: list[tuple[str, str]], doc_id: str) -> tuple[str, pd.DataFrame]:
    """Canonical text ``Speaker: text`` one turn a line, with offsets of each text."""
    parts, rows, pos = [], [], 0
    for speaker, body in turns:
        prefix = f"{speaker}: "
        parts.append(prefix + body + "\n")
        rows.append([speaker, pos + len(prefix), pos + len(prefix) + len(body)])
        pos += len(prefix) + len(body) + 1
    text = "".join(parts)
    return text, _turns_frame(text, doc_id, rows)


def _docx_text(path: Path) -> str:
    try:
        import docx  # python-docx
        from docx.opc.exceptions import OpcError
        from docx.table import Table
    except ImportError as exc:  # pragma: no cover - dependency always installed
        raise DiscourseError("reading .docx needs python-docx (pip install python-docx)", path) from exc
    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, OpcError) as exc:
        raise DiscourseError(f"not a readable Word .docx file ({type(exc).__name__}: {exc})", path) from None
    lines = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = [" ".join(c.text.split()) for c in row.cells]
                cells = [c for i, c in enumerate(cells) if c and not TIMESTAMP.fullmatch(c) and c not in cells[:i]]
                if len(cells) >= 2 and len(cells[0]) <= 40:
                    lines.append(f"{cells[0]}: {' '.join(cells[1:])}")
                elif cells:
                    lines.append(" ".join(cells))
        else:
            lines.append(block.text.replace("\r", ""))
    return "\n".join(lines) + "\n"


_CUE_TIME = re.compile(
    r"(?P<a>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*(?P<b>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})"
)
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+(?P<name>[^>]+)>")
_TAG = re.compile(r"<[^>]*>")


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    secs = 0.0
    for p in parts:
        secs = secs * 60 + float(p)
    return secs


def parse_cues(text: str, path) -> list[tuple[str | None, str, float, float]]:
    """Cues of a WebVTT or SRT file as (speaker or None, text, start s, end s)."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    cues = []
    for block in blocks:
        lines = [ln for ln in block.split("\n") if ln.strip()]
        idx = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if idx is None:
            continue  # header, NOTE, STYLE, REGION blocks
        m = _CUE_TIME.search(lines[idx])
        if not m:
            raise DiscourseError(f"cue timing line not understood: {lines[idx].strip()!r}", path)
        body = " ".join(lines[idx + 1:])
        speaker = None
        v = _VOICE.search(body)
        if v:
            speaker = " ".join(v.group("name").split())
        body = " ".join(html.unescape(_TAG.sub("", body)).split())
        if speaker is None:
            hit = _match_label(body, 0)
            if hit:
                speaker, body = hit[0], body[hit[1]:].strip()
        if body:
            cues.append((speaker, body, _seconds(m.group("a")), _seconds(m.group("b"))))
    return cues


def _cue_turns(cues, doc_id):
    turns, times, speaker = [], [], None
    for who, body, a, b in cues:
        who = who or speaker or UNKNOWN_SPEAKER
        if turns and turns[-1][0] == who:
            turns[-1] = (who, turns[-1][1] + " " + body)
            times[-1] = (times[-1][0], b)
        else:
            turns.append((who, body))
            times.append((a, b))
        speaker = who
    text, df = _render(turns, doc_id)
    df["t_start"] = [t[0] for t in times]
    df["t_end"] = [t[1] for t in times]
    return text, df


def _csv_turns(raw: str, path: Path, doc_id: str | None) -> dict[str, tuple[str, pd.DataFrame, list[str]]]:
    """A CSV transcript's documents, doc_id -> (text, turns, warnings); one with a header and no rows is refused."""
    sep = header_separator(next((line for line in raw.splitlines() if line.strip()), ""))
    try:
        df = pd.read_csv(io.StringIO(raw), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise DiscourseError(f"not a readable CSV ({exc})", path) from None
    cols = {c.lower().strip(): c for c in df.columns}
    missing = [c for c in ("speaker", "text") if c not in cols]
    if missing:
        found = ", ".join(shown(c, 40) for c in df.columns) or "none"
        raise DiscourseError(f"a CSV transcript needs columns speaker,text (optional doc_id); missing "
                             f"{', '.join(missing)}; found: {found}", path)
    if df.empty:
        raise DiscourseError("has a header but no rows", path)
    df = df.rename(columns={cols[k]: k for k in ("speaker", "text", "doc_id") if k in cols})
    if "doc_id" not in df.columns:
        df["doc_id"] = doc_id or path.stem
    elif doc_id is not None:
        df = df[df["doc_id"] == doc_id]
        if df.empty:
            raise DiscourseError(f"no rows with doc_id '{doc_id}'", path)
    out = {}
    for did, rows in df.groupby("doc_id", sort=True):
        blank = rows["text"].str.strip() == ""
        warns = [f"{path}: {int(blank.sum())} row(s) of doc '{did}' have no text and were skipped"] if blank.any() else []
        rows = rows[~blank]
        turns = [
            ((" ".join(s.split()) or UNKNOWN_SPEAKER), " ".join(t.split()))
            for s, t in zip(rows["speaker"], rows["text"])
        ]
        text, frame = _render(turns, str(did))
        out[str(did)] = (text, frame, warns)
    return out


# --- entry points ------------------------------------------------------------


def read_transcripts(
    path: str | os.PathLike, doc_id: str | None = None, known_speakers: set[str] | None = None
) -> list[Transcript]:
    """Read one transcript file; a CSV with a doc_id column may hold several documents.

    ``doc_id`` names the document (default: the file's stem); for a multi-document
    CSV it selects that document's rows.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DiscourseError(f"unsupported transcript type '{suffix}': use {', '.join(FORMATS)}", path)
    data = _read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    name = doc_id or path.stem
    if suffix == ".docx":
        if not data.startswith(b"PK"):
            raise DiscourseError("not a Word .docx file (it is not a zip archive)", path)
        text = _docx_text(path)
        turns, warns = parse_text_turns(text, name, known_speakers, source=str(path))
        return [Transcript(name, str(path), "docx", text, turns, digest, tuple(warns))]
    raw, warns = decode_bytes(data, path)
    if suffix == ".txt":
        turns, more = parse_text_turns(raw, name, known_speakers, source=str(path))
        return [Transcript(name, str(path), "txt", raw, turns, digest, tuple(warns + more))]
    if suffix in (".vtt", ".srt"):
        cues = parse_cues(raw, path)
        if not cues:
            raise DiscourseError("no subtitle cues found (expected 'start --> end' timing lines)", path)
        text, turns = _cue_turns(cues, name)
        if all(who is None for who, *_ in cues):
            warns.append(f"{name}: no speaker labels found; read as one speaker '{UNKNOWN_SPEAKER}'")
        return [Transcript(name, str(path), suffix[1:], text, turns, digest, tuple(warns))]
    docs = _csv_turns(raw, path, doc_id)
    return [
        Transcript(did, str(path), "csv", text, frame, digest, tuple(warns + w))
        for did, (text, frame, w) in docs.items()
    ]


def read_transcript(path: str | os.PathLike, doc_id: str | None = None, known_speakers: set[str] | None = None) -> Transcript:
    """Read one document (see :func:`read_transcripts`)."""
    docs = read_transcripts(path, doc_id, known_speakers)
    if len(docs) != 1:
        raise DiscourseError(f"holds {len(docs)} documents; name one with doc_id", path)
    return docs[0]


def is_interviewer_label(label: str) -> bool:
    """True for the usual interviewer/facilitator labels (Interviewer, INT, I, Q, Facilitator...), also with a
    bracketed part (``Interviewer (KL)``)."""
    return bool(INTERVIEWER_LABELS.match(label_base(label)))
