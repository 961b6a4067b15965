"""Reading REFI-QDA: .qdpx projects (sources, codes, selections, cases) into coded tables, and .qdc codebooks."""

from __future__ import annotations

import bisect
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd

from .codebook import codebook_from_dict
from .errors import DiscourseError
from .qdpx_xml import (
    _META,
    _VALUE_TAGS,
    CODE_COLUMNS,
    CODING_COLUMNS,
    MAX_SOURCE_BYTES,
    _child,
    _children,
    _local,
    _parse_error,
    _text,
    _variable,
    decode_source,
    flatten_codes,
    norm_guid,
    parse_description,
    slug,
)
from .tables import (
    read_yaml,
    write_table,
    write_text,
)

# --- reading a project --------------------------------------------------------------


@dataclass
class QdpxProject:
    """What a .qdpx holds, as tables.

    ``codes``: guid, name, path, parent_guid, codable, color, description (the
    flattened codebook, in document order). ``sources``: guid, name, text.
    ``codings``: one row per Coding of a text selection: selection_guid,
    source_guid, source, start, end, text, code_guid, code (path), coder,
    coding_guid, note. ``cases``: guid, name, variables (dict name -> value).
    ``case_links``: case_guid, source_guid, start, end (the spans a case covers;
    start/end None for a whole source).
    """

    name: str
    origin: str
    users: dict[str, str]
    codes: pd.DataFrame
    sources: pd.DataFrame
    codings: pd.DataFrame
    cases: pd.DataFrame
    case_links: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def _open_archive(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise DiscourseError("file not found", path)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DiscourseError(
            "not a REFI-QDA project: it is not a zip archive (a .qdpx is a zip holding project.qde and sources/)",
            path,
        ) from None


def _find_qde(zf: zipfile.ZipFile, path: Path) -> str:
    """``project.qde`` at the top of the archive (ATLAS.ti names it after the project: any single .qde)."""
    top = [n for n in zf.namelist() if "/" not in n.strip("/") and n.lower().endswith(".qde")]
    for n in top:
        if n.lower() == "project.qde":
            return n
    if len(top) == 1:
        return top[0]
    found = ", ".join(top) if top else "none"
    raise DiscourseError(f"no project.qde in the archive (.qde files at its top: {found}): is this a REFI-QDA project?", path)


def _member_index(zf: zipfile.ZipFile) -> dict[str, str]:
    """Archive members by lower-cased name, so ``Sources/`` and ``sources/`` both work."""
    return {n.lower(): n for n in zf.namelist() if not n.endswith("/")}


def _internal_member(ref: str, members: dict[str, str]) -> str | None:
    name = ref[len("internal://"):].lstrip("/")
    for cand in (f"sources/{name}", name):
        hit = members.get(cand.lower())
        if hit:
            return hit
    return None


class _Reader:
    """Stream-parses project.qde: each source subtree is handled at its end tag, then cleared."""

    def __init__(self, zf: zipfile.ZipFile, path: Path):
        self.zf, self.path = zf, path
        self.members = _member_index(zf)
        self.name = self.origin = ""
        self.atlas = False
        self.users: dict[str, str] = {}
        self.codes: list[dict] = []
        self.variables: dict[str, str] = {}
        self.cases: list[dict] = []
        self.case_refs: list[tuple[str, str, str]] = []  # (case_guid, kind, target guid)
        self.sources: list[dict] = []
        self.spans: dict[str, tuple[str, int, int]] = {}  # selection guid -> (source guid, start, end)
        self.codings: list[tuple] = []  # (selection, source guid, source name, start, end, code, user, coding, notes)
        self.source_codings: list[tuple[str, str]] = []  # whole-source Coding: (source guid, code guid)
        self.source_vars: list[tuple[str, str, str]] = []  # (source guid, variable guid, value)
        self.notes: dict[str, str] = {}
        self.warnings: list[str] = []
        self.skipped_media: dict[str, int] = {}

    # elements -------------------------------------------------------------
    def where(self, el: ET.Element, extra: str = "") -> str:
        bits = [_local(el.tag)]
        if el.get("guid"):
            bits.append(f"guid={el.get('guid')}")
        if el.get("name"):
            bits.append(f"name='{el.get('name')}'")
        return "project.qde: " + " ".join(bits) + extra

    def variable_values(self, el: ET.Element) -> list[tuple[str, str]]:
        out = []
        for vv in _children(el, "VariableValue"):
            ref = _child(vv, "VariableRef")
            value = next((_text(c) for c in vv if _local(c.tag) in _VALUE_TAGS), "")
            if ref is not None:
                out.append((norm_guid(ref.get("targetGUID")), value.strip()))
        return out

    def case(self, el: ET.Element) -> None:
        guid = norm_guid(el.get("guid"))
        if not guid:
            raise DiscourseError(f"{self.where(el)}: a Case needs a guid attribute", self.path)
        self.cases.append({"guid": guid, "name": el.get("name") or "", "values": self.variable_values(el)})
        for kind in ("SourceRef", "SelectionRef"):
            for ref in _children(el, kind):
                self.case_refs.append((guid, kind, norm_guid(ref.get("targetGUID"))))

    def note(self, el: ET.Element) -> None:
        guid = norm_guid(el.get("guid"))
        text = _text(_child(el, "PlainTextContent"))
        ref = el.get("plainTextPath") or ""
        if not text and ref.startswith("internal://"):
            member = _internal_member(ref, self.members)
            if member:
                text = decode_source(self.zf.read(member))[0]
        self.notes[guid] = text.strip()

    def source_text(self, el: ET.Element, label: str) -> str | None:
        content = _child(el, "PlainTextContent")
        ref = el.get("plainTextPath")
        if content is not None and not ref:
            text = _text(content)
        elif ref:
            if not ref.startswith("internal://"):
                return None
            member = _internal_member(ref, self.members)
            if member is None:
                raise DiscourseError(
                    f"{self.where(el)}: plainTextPath {ref} names sources/{ref[len('internal://'):]}, "
                    "which is not in the archive: export the project again with its sources",
                    self.path,
                )
            info = self.zf.getinfo(member)
            if info.file_size > MAX_SOURCE_BYTES:
                raise DiscourseError(f"{self.where(el)}: source file {member} is over {MAX_SOURCE_BYTES >> 20} MB", self.path)
            text, warn = decode_source(self.zf.read(member))
            if warn:
                self.warnings.append(f"source '{label}' ({member}): {warn}")
        else:
            return None
        if self.atlas:
            text = text.replace("\r\n", "\n")
        return text

    def text_source(self, el: ET.Element, label: str | None = None) -> None:
        guid = norm_guid(el.get("guid"))
        if not guid:
            raise DiscourseError(f"{self.where(el)}: a TextSource needs a guid attribute", self.path)
        name = label or el.get("name") or guid
        selections = _children(el, "PlainTextSelection")
        text = self.source_text(el, name)
        if text is None:
            how = "an external file" if el.get("plainTextPath") else "no plain text (neither PlainTextContent nor plainTextPath)"
            if selections:
                raise DiscourseError(
                    f"{self.where(el)}: the source has {how}, so its {len(selections)} selection(s) cannot be read: "
                    "export the project with sources embedded", self.path)
            self.warnings.append(f"source '{name}' ignored: it has {how}")
            return
        self.sources.append({"guid": guid, "name": name, "text": text})
        for sel in selections:
            self.selection(sel, guid, name, text)
        for coding in _children(el, "Coding"):
            ref = _child(coding, "CodeRef")
            if ref is not None:
                self.source_codings.append((guid, norm_guid(ref.get("targetGUID"))))
        for var, value in self.variable_values(el):
            self.source_vars.append((guid, var, value))

    def selection(self, sel: ET.Element, source_guid: str, source_name: str, text: str) -> None:
        sguid = norm_guid(sel.get("guid"))

        def fail(what: str):
            raise DiscourseError(f"{self.where(sel)} in TextSource '{source_name}': {what}", self.path)

        if not sguid:
            fail("a PlainTextSelection needs a guid attribute")
        try:
            start, end = int(sel.get("startPosition")), int(sel.get("endPosition"))
        except (TypeError, ValueError):
            fail("startPosition and endPosition must be whole numbers")
        if start < 0 or end < start:
            fail(f"startPosition {start} and endPosition {end} do not make a span")
        if end > len(text):
            fail(f"endPosition {end} is beyond the end of the source's text ({len(text)} characters)")
        self.spans[sguid] = (source_guid, start, end)
        sel_user = norm_guid(sel.get("creatingUser") or sel.get("modifyingUser"))
        for coding in sel:
            if _local(coding.tag) != "Coding":
                continue
            ref = _child(coding, "CodeRef")
            if ref is None or not ref.get("targetGUID"):
                fail(f"Coding guid={coding.get('guid')} needs a CodeRef")
            notes = tuple(norm_guid(n.get("targetGUID")) for n in coding if _local(n.tag) == "NoteRef")
            self.codings.append((sguid, source_guid, source_name, start, end, norm_guid(ref.get("targetGUID")),
                                 norm_guid(coding.get("creatingUser")) or sel_user, norm_guid(coding.get("guid")), notes))

    # the stream ------------------------------------------------------------
    def parse(self, stream) -> None:
        stack: list[ET.Element] = []
        try:
            for event, el in ET.iterparse(stream, events=("start", "end")):
                name = _local(el.tag)
                if event == "start":
                    stack.append(el)
                    if len(stack) == 1:
                        if name != "Project":
                            raise DiscourseError(
                                f"project.qde: the root element is <{name}>, not <Project>: not a REFI-QDA project", self.path)
                        self.name, self.origin = el.get("name") or "", el.get("origin") or ""
                        self.atlas = "atlas" in self.origin.lower()
                    continue
                stack.pop()
                up = stack[-1] if stack else None
                parent = _local(up.tag) if up is not None else None
                if name == "User" and parent == "Users":
                    self.users[norm_guid(el.get("guid"))] = el.get("name") or el.get("id") or el.get("guid") or ""
                elif name == "Codes" and parent == "CodeBook":
                    self.codes = flatten_codes(el, self.path)
                elif name == "Variable" and parent == "Variables":
                    self.variables[norm_guid(el.get("guid"))] = el.get("name") or ""
                elif name == "Case" and parent == "Cases":
                    self.case(el)
                    el.clear()
                elif name == "TextSource" and parent == "Sources":
                    self.text_source(el)
                    el.clear()
                elif name == "Representation" and parent == "PDFSource":  # a PDF's plain text
                    self.text_source(el, label=up.get("name"))
                    el.clear()
                elif name in ("PictureSource", "AudioSource", "VideoSource", "PDFSource") and parent == "Sources":
                    if name != "PDFSource":
                        self.skipped_media[name] = self.skipped_media.get(name, 0) + 1
                    el.clear()
                elif name == "Note" and parent == "Notes":
                    self.note(el)
                    el.clear()
                if len(stack) == 1:  # a top-level block is done: free it
                    el.clear()
        except ET.ParseError as exc:
            raise DiscourseError(f"project.qde {_parse_error(exc)}", self.path) from None

    # after the stream: links that may point forward -------------------------------
    def result(self) -> QdpxProject:
        case_guids = {c["guid"] for c in self.cases}
        self.codes = [c for c in self.codes if c["guid"] not in case_guids]  # NVivo lists case nodes as codes too
        code_guids = {c["guid"] for c in self.codes}
        source_guids = {s["guid"] for s in self.sources}
        codes_by_guid = {c["guid"]: c for c in self.codes}
        texts = {s["guid"]: s["text"] for s in self.sources}
        rows, links = [], []
        for sguid, source_guid, source, start, end, g, user, coding_guid, notes in self.codings:
            if g in case_guids:  # NVivo-style case coding: the text belongs to the case
                links.append({"case_guid": g, "source_guid": source_guid, "start": start, "end": end})
                continue
            if g not in code_guids:
                raise DiscourseError(
                    f"project.qde: Coding guid={coding_guid} in PlainTextSelection guid={sguid} in TextSource "
                    f"'{source}': its CodeRef targetGUID {g} is not a Code in the CodeBook (nor a Case)", self.path)
            rows.append((sguid, source_guid, source, start, end, texts[source_guid][start:end], g,
                         codes_by_guid[g]["path"], self.users.get(user, "unknown") if user else "unknown",
                         coding_guid, "\n".join(self.notes[n] for n in notes if self.notes.get(n))))
        self.codings = []
        for source_guid, g in self.source_codings:
            if g in case_guids:
                links.append({"case_guid": g, "source_guid": source_guid, "start": None, "end": None})
        ignored_whole = sum(1 for _, g in self.source_codings if g not in case_guids)
        if ignored_whole:
            self.warnings.append(f"{ignored_whole} coding(s) of whole sources ignored: only text selections are imported")
        for case_guid, kind, target in self.case_refs:
            if kind == "SourceRef" and target in source_guids:
                links.append({"case_guid": case_guid, "source_guid": target, "start": None, "end": None})
            elif kind == "SelectionRef" and target in self.spans:
                s, a, b = self.spans[target]
                links.append({"case_guid": case_guid, "source_guid": s, "start": a, "end": b})
        cases = []
        for c in self.cases:
            values = {}
            for var, value in c["values"]:
                vname = self.variables.get(var)
                if vname:
                    values[vname] = value
            cases.append({"guid": c["guid"], "name": c["name"], "variables": values})
        # a source's own variables (MAXQDA, QualCoder) act as a case covering the whole source
        for source_guid in dict.fromkeys(g for g, _, _ in self.source_vars):
            values = {self.variables[v]: val for g, v, val in self.source_vars if g == source_guid and v in self.variables}
            if values:
                pseudo = f"source:{source_guid}"
                cases.append({"guid": pseudo, "name": "", "variables": values})
                links.append({"case_guid": pseudo, "source_guid": source_guid, "start": None, "end": None})
        for kind, n in sorted(self.skipped_media.items()):
            self.warnings.append(f"{n} {kind} element(s) ignored: only text sources (and PDF text representations) are imported")
        return QdpxProject(
            name=self.name, origin=self.origin, users=dict(self.users),
            codes=pd.DataFrame(self.codes, columns=CODE_COLUMNS),
            sources=pd.DataFrame(self.sources, columns=["guid", "name", "text"], dtype=object),  # texts kept once, not copied
            codings=pd.DataFrame.from_records(rows, columns=CODING_COLUMNS),
            cases=pd.DataFrame(cases, columns=["guid", "name", "variables"]),
            case_links=pd.DataFrame(links, columns=["case_guid", "source_guid", "start", "end"]),
            warnings=self.warnings,
        )


def read_qdpx(path: str | os.PathLike) -> QdpxProject:
    """Read a .qdpx: codebook, text sources, codings, cases (project.qde is stream-parsed)."""
    path = Path(path)
    with _open_archive(path) as zf:
        qde = _find_qde(zf, path)
        reader = _Reader(zf, path)
        with zf.open(qde) as stream:
            reader.parse(stream)
        return reader.result()


# --- codes, maps, metadata -------------------------------------------------------------


def read_code_map(path: str | os.PathLike, codebook_ids: list[str] | None = None) -> dict[str, list[str]]:
    """Read a YAML map ``{qda code name or path: codebook id}`` (a list of ids, or null to drop the code)."""
    path = Path(path)
    data = read_yaml(path, "code map file")
    if not isinstance(data, dict) or not data:
        raise DiscourseError("a code map is a YAML mapping 'QDA code name or Parent/Child path: codebook id'", path)
    known = {c.lower(): c for c in codebook_ids} if codebook_ids is not None else None
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        values = [] if value is None else value if isinstance(value, list) else [value]
        ids = []
        for v in values:
            if not isinstance(v, str) or not v.strip():
                raise DiscourseError(f"'{key}': the value must be a codebook id, a list of ids, or null", path)
            v = v.strip()
            if known is not None:
                if v.lower() not in known:
                    raise DiscourseError(
                        f"'{key}' maps to '{v}', which is not in the codebook (known: {', '.join(codebook_ids)})", path)
                v = known[v.lower()]
            ids.append(v)
        out[_path_key(str(key))] = ids
    return out


def _path_key(name: str) -> str:
    return "/".join(p.strip() for p in name.split("/")).lower()


def _numbered_id(base: str, seen: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... if already in ``seen``; the id returned is added to ``seen``."""
    cid, n = base, 1
    while cid in seen:
        n += 1
        cid = f"{base}_{n}"
    seen.add(cid)
    return cid


def resolve_codes(codes: pd.DataFrame, code_map: dict[str, list[str]] | None, codebook_ids: list[str] | None
                  ) -> tuple[dict[str, list[str] | None], list[str]]:
    """Codebook ids for each QDA code guid (None: not covered), and the map keys that matched nothing.

    With a map: a key equal to the code's path wins over a key equal to its
    name (both case-insensitive). Without one: the codebook id equal to the
    code's name or to its slugged path, numbered ``_2``, ``_3``... where codes
    slug alike, as ``import-qdc`` makes their ids.
    """
    out: dict[str, list[str] | None] = {}
    if code_map is not None:
        used = set()
        for g, name, path in zip(codes["guid"], codes["name"], codes["path"]):
            for key in (_path_key(path), _path_key(name)):
                if key in code_map:
                    out[g] = list(code_map[key])
                    used.add(key)
                    break
            else:
                out[g] = None
        return out, [k for k in code_map if k not in used]
    ids = {c.lower(): c for c in (codebook_ids or [])}
    seen: set[str] = set()
    for g, name, path, codable in zip(codes["guid"], codes["name"], codes["path"], codes["codable"]):
        # numbered as import-qdc numbers them, so two codes that slug alike stay two codes
        cid = _numbered_id(slug(path), seen) if codable else slug(path)
        hit = ids.get(cid) or ids.get(name.strip().lower())
        out[g] = [hit] if hit else None
    return out, []


def selection_metadata(project: QdpxProject) -> dict[tuple[str, int, int], dict[str, str]]:
    """role/trust for each coded span (source guid, start, end), from the most specific case containing it.

    A case covers the spans it is linked to (SelectionRef, NVivo case coding)
    or a whole source (SourceRef, a source's own variables). For each of role
    and trust separately, the smallest covering span with that variable wins.
    """
    per_source: dict[str, list[tuple[int, int, int, dict]]] = {}
    variables = {g: {k.strip().lower(): v for k, v in vs.items() if v != ""}
                 for g, vs in zip(project.cases["guid"], project.cases["variables"])}
    for case_guid, source_guid, start, end in project.case_links.itertuples(index=False):
        vals = {k: variables.get(case_guid, {}).get(k) for k in _META}
        vals = {k: v for k, v in vals.items() if v}
        if not vals:
            continue
        whole = start is None or pd.isna(start)
        a, b = (0, 1 << 62) if whole else (int(start), int(end))
        per_source.setdefault(source_guid, []).append((b - a, a, b, vals))
    out = {}
    spans = project.codings[["source_guid", "start", "end"]].drop_duplicates().itertuples(index=False)
    for source_guid, start, end in spans:
        found: dict[str, str] = {}
        for _, a, b, vals in sorted(per_source.get(source_guid, []), key=lambda t: t[0]):
            if a <= start and end <= b:
                for k, v in vals.items():
                    found.setdefault(k, v)
        out[(source_guid, int(start), int(end))] = found
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _uncovered_codes(codings: pd.DataFrame, mapping: dict[str, list[str] | None]) -> list[str]:
    """One warning per QDA code used in a selection that maps to no codebook id (a null map entry is not warned of)."""
    uncovered = codings[[mapping.get(g) is None for g in codings["code_guid"]]]
    counts = uncovered.groupby(["code", "code_guid"])["selection_guid"].nunique().reset_index(name="n")
    counts = counts.sort_values(["n", "code", "code_guid"], ascending=[False, True, True], kind="stable")
    return [(f"QDA code '{code}' (on {_count(n, 'selection')}) maps to no codebook id and is left out: "
             f"give it a --map entry ('{code}: <codebook id>', or null to drop it)")
            for code, n in zip(counts["code"], counts["n"])]


def _speaker_regions(text: str, known: set[str]) -> tuple[list[int], list[tuple[int, int, str]]]:
    """The text's speaker turns as regions (from, to, speaker), each from the previous turn's end (its label
    line included) to its own end; and the regions' ends, for bisecting. Text without labels: one speaker."""
    from .transcripts import parse_text_turns

    turns, _ = parse_text_turns(text, "source", known)
    regions, prev = [], 0
    for end, speaker in zip(turns["end"], turns["speaker"]):
        regions.append((prev, int(end), str(speaker)))
        prev = int(end)
    return [r[1] for r in regions], regions


def _speakers_in(text: str, start: int, end: int, ends: list[int], regions: list[tuple[int, int, str]]) -> list[str]:
    """The speakers whose turns (label lines included) the span's text, without its outer white space, touches."""
    piece = text[start:end]
    a, b = start + len(piece) - len(piece.lstrip()), end - (len(piece) - len(piece.rstrip()))
    names: list[str] = []
    for ra, rb, speaker in regions[bisect.bisect_right(ends, a):]:
        if ra >= b:
            break
        if speaker not in names:
            names.append(speaker)
    return names


def _cross_speaker_warning(project: QdpxProject, coded: pd.DataFrame) -> list[str]:
    """One warning for the rows of ``coded`` (with source_guid) whose span runs over more than one speaker's turn."""
    texts = dict(zip(project.sources["guid"], project.sources["text"]))
    names = dict(zip(project.cases["guid"], project.cases["name"]))
    parsed: dict[str, tuple] = {}
    crossing = []
    for guid, source, start, end in zip(coded["source_guid"], coded["source"], coded["start"], coded["end"]):
        start, end = int(start), int(end)
        if guid not in parsed:
            linked = project.case_links.loc[project.case_links["source_guid"] == guid, "case_guid"]
            known = {names[c].rsplit("/", 1)[-1].strip() for c in linked if names.get(c)}
            parsed[guid] = _speaker_regions(texts[guid], known)
        speakers = _speakers_in(texts[guid], start, end, *parsed[guid])
        if len(speakers) > 1:
            crossing.append((source, start, end, speakers))
    if not crossing:
        return []
    (source, start, end, speakers), n = crossing[0], len(crossing)
    line = (f"{_count(n, 'coded excerpt')} {'runs' if n == 1 else 'run'} over more than one speaker's turn (the "
            f"first: source '{source}' {start}-{end}, {', '.join(speakers)}); imported as selected, with the role "
            "their cases give: narrow such selections in your QDA tool if only one speaker's words carry the code")
    return [line]


def coded_from_project(project: QdpxProject, code_map: dict[str, list[str]] | None = None,
                       codebook_ids: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """A coded table (text, codes, coder, source, start, end[, role, trust]) and what was left out or is doubtful.

    Codings of one coder on one span (across selections) make one row, codes
    ``;``-joined and sorted. The report names, in this order: each QDA code
    the map does not cover (once, with how many selections carry it), the
    rows whose span runs over several speakers' turns (one line), each
    selection skipped (coded only with uncovered codes, or white space), and
    map keys that match no code.
    """
    if code_map is None and not codebook_ids:
        raise DiscourseError("give a code map or a codebook to map the project's codes to")
    mapping, unused = resolve_codes(project.codes, code_map, codebook_ids)
    df = project.codings
    rows, skipped = [], []
    meta = selection_metadata(project) if len(df) else {}
    for (source_guid, start, end, coder), grp in df.groupby(["source_guid", "start", "end", "coder"], sort=False):
        ids, dropped = set(), set()
        for g, name in zip(grp["code_guid"], grp["code"]):
            m = mapping.get(g)
            if m is None:
                dropped.add(name)
            else:
                ids.update(m)
        source, text = grp["source"].iloc[0], grp["text"].iloc[0]
        where = f"source '{source}' {start}-{end} (coder {coder})"
        if not ids:
            if dropped:
                skipped.append(f"{where}: skipped, coded only with {', '.join(repr(d) for d in sorted(dropped))}, which the map does not cover")
            continue
        if not text.strip():
            skipped.append(f"{where}: skipped, the selection is only white space")
            continue
        row = {"text": text, "codes": ";".join(sorted(ids)), "coder": coder, "source": source,
               "start": int(start), "end": int(end), "source_guid": source_guid}
        row.update(meta.get((source_guid, int(start), int(end)), {}))
        rows.append(row)
    out = _coded_table(rows)
    report = _uncovered_codes(df, mapping) + _cross_speaker_warning(project, out) + skipped
    report += [f"map key '{k}' matches no code in the project" for k in unused]
    return out.drop(columns="source_guid"), report


def _coded_table(rows: list[dict]) -> pd.DataFrame:
    """The rows as a coded table sorted by source, start, end, coder (with a source_guid column to drop)."""
    columns = ["text", "codes", "coder", "source", "start", "end"]
    out = pd.DataFrame(rows)
    extra = [m for m in _META if m in out.columns]
    if out.empty:
        return pd.DataFrame(columns=columns + ["source_guid"])
    for m in extra:
        out[m] = out[m].fillna("")
    out = out.sort_values(["source", "start", "end", "coder"], kind="stable").reset_index(drop=True)
    return out[columns + extra + ["source_guid"]]


def code_coverage(project: QdpxProject, code_map: dict[str, list[str]] | None = None,
                  codebook_ids: list[str] | None = None) -> pd.DataFrame:
    """Each QDA code used in a coding: code (path), selections, codebook ids it maps to ('' if none).

    Sorted with the uncovered codes first, most used first: a start for writing a map.
    """
    mapping, _ = resolve_codes(project.codes, code_map, codebook_ids)
    used = project.codings.groupby(["code_guid", "code"])["selection_guid"].nunique().reset_index(name="selections")
    used["mapped_to"] = [";".join(mapping.get(g) or []) for g in used["code_guid"]]
    used = used.sort_values(["mapped_to", "selections", "code"], ascending=[True, False, True], kind="stable")
    return used[["code", "selections", "mapped_to"]].reset_index(drop=True)


def import_qdpx(path: str | os.PathLike, code_map: dict[str, list[str]] | None = None,
                codebook_ids: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Coded excerpts from a .qdpx (see :func:`coded_from_project`), and the report of what was skipped."""
    project = read_qdpx(path)
    coded, report = coded_from_project(project, code_map, codebook_ids)
    return coded, project.warnings + report


# --- sources as transcripts -----------------------------------------------------------


def _doc_ids(names: list[str]) -> list[str]:
    out, seen = [], set()
    for name in names:
        stem = re.sub(r"\.(txt|docx?|rtf|pdf|odt)$", "", name.strip(), flags=re.IGNORECASE)
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "source"
        doc, n = base, 1
        while doc.lower() in seen:
            n += 1
            doc = f"{base}_{n}"
        seen.add(doc.lower())
        out.append(doc)
    return out


def extract_sources(project: QdpxProject, folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Write each text source as ``transcripts/<doc_id>.txt`` with ``manifest.csv`` and ``speakers.csv``.

    The .txt files hold the source text exactly, so `discourse classify`
    offsets equal the project's positions. trust: the value the source's
    cases agree on, else ``unknown``. speakers.csv lists every speaker label
    found, with the role of a case named ``<doc_id>/<speaker>`` or
    ``<speaker>`` linked to the source, else the role most of the speaker's
    coded selections get from their cases (interviewer labels: interviewer;
    blank: fill it in). Returns (manifest, speakers, warnings).
    """
    from .manifest import INTERVIEWER
    from .transcripts import is_interviewer_label, parse_text_turns

    folder = Path(folder)
    warnings: list[str] = []
    doc_ids = _doc_ids(project.sources["name"].tolist())
    meta = selection_metadata(project)
    variables = dict(zip(project.cases["guid"], project.cases["variables"]))
    names = dict(zip(project.cases["guid"], project.cases["name"]))
    links = project.case_links
    man_rows, spk_rows = [], []
    for doc_id, (guid, name, text) in zip(doc_ids, project.sources[["guid", "name", "text"]].itertuples(index=False)):
        file = f"transcripts/{doc_id}.txt"
        write_text(text, folder / file)
        linked = links.loc[links["source_guid"] == guid, "case_guid"].unique().tolist()
        trusts = {_variable(variables.get(c), "trust") for c in linked} - {None}
        trust = trusts.pop() if len(trusts) == 1 else "unknown"
        man_rows.append({"doc_id": doc_id, "file": file, "trust": trust, "qda_source": name})
        case_role = {}  # cases named <speaker> linked to this source, or <doc_id>/<speaker> anywhere
        for c in linked + [c for c, n in names.items() if n.strip().lower().startswith(f"{doc_id.lower()}/")]:
            role = _variable(variables.get(c), "role")
            if role and names.get(c):
                case_role[names[c].strip().lower()] = role
        known = {n.rsplit("/", 1)[-1] for n in case_role}
        turns, _ = parse_text_turns(text, doc_id, known)
        coded = [(a, b, m["role"]) for (s, a, b), m in meta.items() if s == guid and m.get("role")]
        for speaker, sub in turns.groupby("speaker", sort=False):
            role = case_role.get(f"{doc_id}/{speaker}".lower()) or case_role.get(speaker.lower())
            if not role and is_interviewer_label(speaker):
                role = INTERVIEWER
            if not role:
                votes: dict[str, int] = {}
                for a, b, r in coded:
                    if any(ta <= a and b <= tb for ta, tb in zip(sub["start"], sub["end"])):
                        votes[r] = votes.get(r, 0) + 1
                role = max(votes, key=lambda r: (votes[r], r)) if votes else ""
            spk_rows.append({"doc_id": doc_id, "speaker": speaker, "role": role})
        if turns.empty:
            warnings.append(f"{file}: no speaker turns found; classify will skip it")
    manifest = pd.DataFrame(man_rows, columns=["doc_id", "file", "trust", "qda_source"])
    speakers = pd.DataFrame(spk_rows, columns=["doc_id", "speaker", "role"])
    write_table(manifest, folder / "manifest.csv")
    write_table(speakers, folder / "speakers.csv")
    blank = int((speakers["role"] == "").sum())
    if blank:
        warnings.append(f"{blank} speaker(s) in {folder / 'speakers.csv'} have no role: fill them in before classifying")
    return manifest, speakers, warnings


def import_qdc(path: str | os.PathLike) -> dict:
    """A codebook dict (for codebook_from_dict / YAML) from a .qdc, or from the CodeBook of a .qdpx.

    Every codable code becomes a code: id = :func:`slug` of its path (made
    unique with _2, _3...), label and definition from a Description written by
    :func:`describe_code`, else label = path and definition = the description.
    """
    path = Path(path)
    if not path.is_file():
        raise DiscourseError("file not found", path)
    if zipfile.is_zipfile(path):
        project = read_qdpx(path)
        codes = project.codes
        name = project.name or path.stem
    else:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise DiscourseError(_parse_error(exc), path) from None
        if _local(root.tag) != "CodeBook":
            raise DiscourseError(f"the root element is <{_local(root.tag)}>, not <CodeBook>: not a REFI-QDA codebook", path)
        codes_el = _child(root, "Codes")
        if codes_el is None:
            raise DiscourseError("<CodeBook> has no <Codes> element", path)
        codes = pd.DataFrame(flatten_codes(codes_el, path), columns=CODE_COLUMNS)
        name = path.stem
    out, seen = [], set()
    for r in codes[codes["codable"]].to_dict("records"):
        desc = parse_description(r["description"])
        cid = _numbered_id(slug(r["path"]), seen)
        code = {"id": cid, "label": desc.get("label") or r["path"],
                "definition": desc.get("definition") or f"{r['path']} (no description in the QDA codebook)"}
        for k in ("include", "exclude", "examples"):
            if desc.get(k):
                code[k] = desc[k]
        out.append(code)
    if not out:
        raise DiscourseError("the codebook has no codable codes", path)
    data = {"name": name, "codes": out}
    codebook_from_dict(data, path)  # validate
    return data
