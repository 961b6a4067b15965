"""REFI-QDA pieces shared by reading and writing: namespaces, guids, slugs, code descriptions, XML helpers.

See discourse/qdpx.py for the rules the exchange follows.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
import unicodedata
import uuid
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd

from . import __version__
from .codebook import Code, Codebook
from .errors import DiscourseError

PROJECT_NS = "urn:QDA-XML:project:1.0"
CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
MODEL_USER = "discourse model"
DEFAULT_CREATED = "2024-01-01T00:00:00Z"
GUID_NAMESPACE = uuid.UUID("6f1c3e1a-52b7-5d0e-9a53-2c1f0d6b7e41")  # fixed: guids are uuid5 of stable ids
MAX_SOURCE_BYTES = 200 * 1024 * 1024
PALETTE = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
           "#BCBD22", "#17BECF")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_VALUE_TAGS = ("TextValue", "BooleanValue", "IntegerValue", "FloatValue", "DateValue", "DateTimeValue")
_META = ("role", "trust")


# --- small helpers ------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _local(tag: str) -> str:
    """``{urn:QDA-XML:project:1.0}Code`` -> ``Code`` (any namespace version)."""
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element | None) -> str:
    return "" if el is None or el.text is None else el.text


def _parse_error(exc: ET.ParseError) -> str:
    """``line 4, column 52: the XML is not well-formed (mismatched tag)``."""
    line, col = getattr(exc, "position", (0, 0))
    what = str(exc).rsplit(": line", 1)[0].removeprefix("not well-formed ").strip("()")
    return f"line {line}, column {col}: the XML is not well-formed ({what})"


def norm_guid(value: str | None) -> str:
    """GUIDs compare case-insensitively and with or without braces."""
    return (value or "").strip().strip("{}").lower()


def slug(name: str) -> str:
    """A valid codebook id from any code name or path (lower-case ``[a-z0-9_]``, starting with a letter)."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    s = re.sub(r"[^a-z0-9]+", "_", s).strip("_")
    if not s:
        return "code"
    return s if s[0].isalpha() else f"c_{s}"


def guid_for(kind: str, key: str) -> str:
    """A deterministic GUID (uuid5) for a stable id, e.g. ``guid_for('source', 'A01')``."""
    return str(uuid.uuid5(GUID_NAMESPACE, f"{kind}:{key}"))


def creation_time(value: str | None = None) -> str:
    """The fixed creationDateTime of exports: ``value``, else SOURCE_DATE_EPOCH, else a constant."""
    if value:
        return value
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return DEFAULT_CREATED


def _present(value) -> bool:
    """A real metadata value (not None, NaN or empty)."""
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and str(value).strip() != ""


def _variable(values: dict | None, name: str) -> str | None:
    """A case variable by name, any capitalisation; None if absent or empty."""
    return next((v for k, v in (values or {}).items() if k.strip().lower() == name and _present(v)), None)


def _clean(value) -> str:
    """Text safe for XML 1.0 (control characters dropped)."""
    return _XML_BAD.sub("", str(value))


def decode_source(data: bytes) -> tuple[str, str | None]:
    """Decode a plain-text source: BOM-marked UTF-8/UTF-16, else UTF-8, else Windows-1252 (with a warning).

    Text that is UTF-8 but for a few stray bytes stays UTF-8 (each stray byte one replacement character, so
    positions after it are not shifted, as they would be if every accented letter became two); text with no
    valid multi-byte UTF-8 character at all is read as Windows-1252.

    A BOM is not part of the text: positions count from the first character after it.
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace"), None
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[2:].decode(enc, errors="replace"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())  # replacement characters that were not in the file
    if any(ord(ch) > 127 and ch != "\ufffd" for ch in text):  # real UTF-8 beside a stray byte: positions count in it
        return text, f"not valid UTF-8: {bad} stray byte(s) read as replacement characters"
    return data.decode("cp1252", errors="replace"), "not UTF-8; read as Windows-1252"



CODING_COLUMNS = ["selection_guid", "source_guid", "source", "start", "end", "text", "code_guid", "code", "coder",
                  "coding_guid", "note"]
CODE_COLUMNS = ["guid", "name", "path", "parent_guid", "codable", "color", "description"]


def flatten_codes(codes_el: ET.Element, path: Path) -> list[dict]:
    """The Code elements under ``<Codes>``, depth first, each with its ``Parent/Child`` path.

    ``isCodable`` defaults to true (REFI-QDA); a folder (``false``) stays in
    its children's paths.
    """
    out: list[dict] = []

    def walk(el: ET.Element, parents: tuple[str, ...], parent_guid: str | None) -> None:
        name, guid = el.get("name"), el.get("guid")
        if not guid or name is None:
            shown = f"name='{name}'" if name else f"guid={guid}" if guid else "with no guid or name"
            raise DiscourseError(f"Code {shown} under {'/'.join(parents) or 'Codes'}: a Code needs guid and name attributes", path)
        names = parents + (name.strip(),)
        out.append({
            "guid": norm_guid(guid), "name": name, "path": "/".join(names), "parent_guid": parent_guid,
            "codable": (el.get("isCodable") or "true").strip().lower() not in ("false", "0"),
            "color": el.get("color") or "", "description": _text(_child(el, "Description")).strip(),
        })
        for sub in _children(el, "Code"):
            walk(sub, names, norm_guid(guid))

    for code in _children(codes_el, "Code"):
        walk(code, (), None)
    return out



# --- writing ----------------------------------------------------------------------------


def _el(tag: str, attrib: dict | None = None, text: str | None = None, parent: ET.Element | None = None) -> ET.Element:
    attrs = {k: _clean(v) for k, v in (attrib or {}).items() if v is not None}
    el = ET.Element(tag, attrs) if parent is None else ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = _clean(text)
    return el


def _xml_bytes(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode("utf-8")


def describe_code(code: Code) -> str:
    """A code's Description: label, definition, include, exclude, examples, one labelled block each."""
    lines = [f"Label: {' '.join(code.label.split())}", f"Definition: {' '.join(code.definition.split())}"]
    for title, items in (("Include", code.include), ("Exclude", code.exclude), ("Examples", code.examples)):
        if items:
            lines.append(f"{title}:")
            lines += [f"- {' '.join(i.split())}" for i in items]
    return "\n".join(lines)


def parse_description(text: str) -> dict:
    """The inverse of :func:`describe_code`; any other description is the definition."""
    text = (text or "").strip()
    if not re.match(r"^(Label|Definition):", text):
        return {"definition": " ".join(text.split())} if text else {}
    out: dict = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^(Label|Definition|Include|Exclude|Examples):\s*(.*)$", line.strip())
        if m:
            key = m.group(1).lower()
            if key in ("label", "definition"):
                out[key] = m.group(2).strip()
                current = None
            else:
                current = out.setdefault(key, [])
                if m.group(2).strip():
                    current.append(m.group(2).strip())
        elif current is not None and line.strip().startswith("- "):
            current.append(line.strip()[2:].strip())
        elif line.strip() and "definition" in out and current is None:
            out["definition"] += " " + line.strip()
    return out


def _codes_xml(parent: ET.Element, codebook: Codebook) -> None:
    codes = _el("Codes", parent=parent)
    for i, code in enumerate(codebook.codes):
        c = _el("Code", {"guid": guid_for("code", code.id), "name": code.id, "isCodable": "true",
                         "color": PALETTE[i % len(PALETTE)]}, parent=codes)
        _el("Description", text=describe_code(code), parent=c)



# --- codebooks (.qdc) --------------------------------------------------------------------


def codebook_qdc_bytes(codebook: Codebook) -> bytes:
    """The .qdc XML of a codebook (codes flat, in order; guids as in export_qdpx)."""
    root = _el("CodeBook", {"xmlns": CODEBOOK_NS, "origin": f"discourse {__version__}"})
    _codes_xml(root, codebook)
    return _xml_bytes(root)
