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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import DiscourseError

TURN_COLUMNS = ["doc_id", "turn", "speaker", "text", "start", "end"]
FORMATS = (".txt", ".docx", ".vtt", ".srt", ".csv")
MAX_FILE_BYTES = 20 * 1024 * 1024  # an hour-long interview is ~100 KB

UNKNOWN_SPEAKER = "unknown"

# --- speaker labels -----------------------------------------------------------

_TS = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?"
TIMESTAMP = re.compile(rf"\[\s*{_TS}\s*\]|\(\s*{_TS}\s*\)|(?<![\w:]){_TS}(?![\w:])")
_LEAD_TS = re.compile(rf"[ \t]*(?:(?:\[\s*{_TS}\s*\]|\(\s*{_TS}\s*\)|{_TS})[ \t]*[-–—]?[ \t]*)+")
_WORD = r"[A-Z][\w'’.\-]*|\d{1,3}"
_TITLE = r"(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Cllr|Rev)\.?"
_COLON_LABEL = re.compile(rf"(?P<label>(?:{_TITLE}[ \t]+)?(?:{_WORD})(?:[ \t]+(?:{_WORD})){{0,3}})[ \t]*:(?![\d/])[ \t]*")
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
        label = " ".join(m.group("label").split())
        if label.lower() in CONVENTIONS or TIMESTAMP.fullmatch(label):
            continue
        if len(label) > 40:
            continue
        if rx is _DASH_LABEL and _says_again(label, line[m.end():]):
            continue  # "I - I wasn't sure": a stammer in the speech, not a speaker
        return label, m.end()
    return None


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


def parse_text_turns(
    text: str, doc_id: str, known_speakers: set[str] | None = None, source: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Split plain transcript text into turns by speaker labels.

    A label is accepted when it is a usual interview label (Interviewer, R, P3,
    Dr Smith...), is listed in ``known_speakers``, or occurs at least twice.
    Lines without a label continue the previous speaker's turn; a timestamp
    inside a turn ends it and the same speaker's next words start a new turn.
    A line that starts with a label seen only once is read as the current
    speaker's words, with a warning naming ``source`` (default: ``doc_id``) and the line.
    """
    known = {s.lower() for s in (known_speakers or ())}
    parsed = []  # (line_start, line, label or None, content_pos, otter_label)
    counts: dict[str, int] = {}
    for start, line in _lines(text):
        m = _LEAD_TS.match(line)
        pos = m.end() if m else 0
        otter = _OTTER_LABEL.match(line, pos)
        hit = None if otter else _match_label(line, pos)
        label = otter.group("label") if otter else (hit[0] if hit else None)
        if label:
            counts[label] = counts.get(label, 0) + 1
        parsed.append((start, line, label, hit[1] if hit else pos, bool(otter)))

    def accepted(label: str) -> bool:
        return bool(_KNOWN_LABEL.match(label)) or label.lower() in known or counts.get(label, 0) >= 2

    warnings = []
    any_label = any(label and accepted(label) for _, _, label, _, _ in parsed)
    if not any_label:
        warnings.append(f"{doc_id}: no speaker labels found; read as one speaker '{UNKNOWN_SPEAKER}'")
    rows: list[list] = []  # speaker, start, end
    absorbed: list[tuple[int, str, str]] = []  # (line number, label, speaker) of label-like lines read as speech
    speaker = None if any_label else UNKNOWN_SPEAKER
    pending_new = False
    for number, (start, line, label, pos, otter) in enumerate(parsed, 1):
        if label and accepted(label):
            speaker, pending_new = " ".join(label.split()), True
        else:
            if label and any_label and speaker is not None:
                absorbed.append((number, label, speaker))
            lead = _LEAD_TS.match(line)
            pos = lead.end() if lead else 0
        if otter and pending_new:
            continue
        for a, b in _content_pieces(text, start, line, pos):
            if speaker is None:
                continue  # header lines before the first label
            joins = (
                rows
                and not pending_new
                and rows[-1][0] == speaker
                and not text[rows[-1][2]:a].strip()
            )
            if joins:
                rows[-1][2] = b
            else:
                rows.append([speaker, a, b])
            pending_new = False
    if absorbed:
        warnings.append(_absorbed_warning(source or doc_id, absorbed))
    return _turns_frame(text, doc_id, rows), warnings


def _absorbed_warning(source: str, absorbed: list[tuple[int, str, str]], show: int = 5) -> str:
    """One warning for the label-like lines of a document read as speech rather than as new speakers."""
    if len(absorbed) == 1:
        number, label, speaker = absorbed[0]
        return (f"{source}: line {number} starts like a speaker label ('{label}') seen only once, so it was read "
                f"as part of {speaker}'s turn; if {label} is a speaker, add them to the speaker table")
    shown = ", ".join(f"{n} ('{label}', in {speaker}'s turn)" for n, label, speaker in absorbed[:show])
    more = f" and {len(absorbed) - show} more" if len(absorbed) > show else ""
    return (f"{source}: lines {shown}{more} start like speaker labels seen only once, so they were read as part "
            "of the turn they are in; add any that are speakers to the speaker table")


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
    try:
        df = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise DiscourseError(f"not a readable CSV ({exc})", path) from None
    cols = {c.lower().strip(): c for c in df.columns}
    missing = [c for c in ("speaker", "text") if c not in cols]
    if missing:
        raise DiscourseError(
            f"a CSV transcript needs columns speaker,text (optional doc_id); missing {', '.join(missing)}", path
        )
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
    """True for the usual interviewer/facilitator labels (Interviewer, INT, I, Q, Facilitator...)."""
    return bool(INTERVIEWER_LABELS.match(label.strip()))
