"""REFI-QDA exchange: .qdpx projects and .qdc codebooks, to and from NVivo/ATLAS.ti/MAXQDA/QualCoder."""

import io
import json
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest

from discourse.codebook import codebook_from_dict, load_codebook
from discourse.coded import read_coded
from discourse.errors import DiscourseError
from discourse.qdpx import (
    PROJECT_NS,
    code_coverage,
    codebook_qdc_bytes,
    export_qdc,
    export_qdpx,
    extract_sources,
    import_qdc,
    import_qdpx,
    read_code_map,
    read_qdpx,
    slug,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "qdpx"
DEMO = ROOT / "corpora" / "demo"
P = "{" + PROJECT_NS + "}"


# --- the schema's rules, checked by hand ------------------------------------------------

GUID = re.compile(r"^(\{)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?(1)\})$")
DATETIME = re.compile(r"^-?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
RGB = re.compile(r"^#([A-Fa-f0-9]{6}|[A-Fa-f0-9]{3})$")
TEXT_SOURCE = ["Description", "PlainTextContent", "PlainTextSelection", "Coding", "NoteRef", "VariableValue"]
ORDER = {  # allowed children, in the order Project.xsd's sequences give them
    "Project": ["Users", "CodeBook", "Variables", "Cases", "Sources", "Notes", "Links", "Sets", "Graphs", "Description", "NoteRef"],
    "Users": ["User"], "CodeBook": ["Codes"], "Codes": ["Code"], "Code": ["Description", "NoteRef", "Code"],
    "Variables": ["Variable"], "Variable": ["Description"], "Cases": ["Case"],
    "Case": ["Description", "CodeRef", "VariableValue", "SourceRef", "SelectionRef"],
    "VariableValue": ["VariableRef", "TextValue", "BooleanValue", "IntegerValue", "FloatValue", "DateValue", "DateTimeValue"],
    "Sources": ["TextSource", "PictureSource", "PDFSource", "AudioSource", "VideoSource"],
    "TextSource": TEXT_SOURCE, "Note": TEXT_SOURCE, "Notes": ["Note"],
    "PlainTextSelection": ["Description", "Coding", "NoteRef"], "Coding": ["CodeRef", "NoteRef"],
    "User": [], "CodeRef": [], "NoteRef": [], "SourceRef": [], "SelectionRef": [], "VariableRef": [],
    "Description": [], "PlainTextContent": [], "TextValue": [],
}
REQUIRED = {
    "Project": ["name"], "User": ["guid"], "Code": ["guid", "name", "isCodable"],
    "Variable": ["guid", "name", "typeOfVariable"], "Case": ["guid"], "TextSource": ["guid"], "Note": ["guid"],
    "PlainTextSelection": ["guid", "startPosition", "endPosition"], "Coding": ["guid"],
    "CodeRef": ["targetGUID"], "NoteRef": ["targetGUID"], "SourceRef": ["targetGUID"],
    "SelectionRef": ["targetGUID"], "VariableRef": ["targetGUID"],
}
EXACTLY_ONE = {"Coding": "CodeRef", "VariableValue": "VariableRef", "CodeBook": "Codes"}


def check_qdpx(data: bytes) -> ET.Element:
    """Fail unless a .qdpx obeys Project.xsd's structure and the exchange rules; return the root."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert "project.qde" in zf.namelist()
    root = ET.fromstring(zf.read("project.qde"))
    assert root.tag == P + "Project"
    guids, by_kind = set(), {}
    for el in root.iter():
        assert el.tag.startswith(P), f"{el.tag} is outside the project namespace"
        name = el.tag[len(P):]
        assert name in ORDER, f"unexpected element {name}"
        kids = [c.tag[len(P):] for c in el]
        idx = [ORDER[name].index(k) if k in ORDER[name] else -1 for k in kids]
        assert -1 not in idx, f"{name} may not hold {kids[idx.index(-1)]}"
        assert idx == sorted(idx), f"children of {name} out of schema order: {kids}"
        for attr in REQUIRED.get(name, []):
            assert el.get(attr) not in (None, ""), f"{name} lacks required attribute {attr}"
        if name in EXACTLY_ONE:
            assert kids.count(EXACTLY_ONE[name]) == 1, f"{name} needs exactly one {EXACTLY_ONE[name]}"
        for attr in ("guid", "targetGUID", "creatingUser", "creatingUserGUID", "modifyingUser"):
            if el.get(attr) is not None:
                assert GUID.match(el.get(attr)), f"{name} {attr}={el.get(attr)!r} is not a GUID"
        for attr in ("creationDateTime", "modifiedDateTime"):
            if el.get(attr) is not None:
                assert DATETIME.match(el.get(attr)), f"{name} {attr}={el.get(attr)!r} is not an xsd:dateTime"
        if name == "Code":
            assert el.get("isCodable") in ("true", "false", "1", "0")
            assert el.get("color") is None or RGB.match(el.get("color"))
        if el.get("guid"):
            assert el.get("guid").lower() not in guids, f"guid {el.get('guid')} used twice"
            guids.add(el.get("guid").lower())
            by_kind.setdefault(name, set()).add(el.get("guid").lower())
    users = by_kind.get("User", set())
    for el in root.iter():
        name = el.tag[len(P):]
        for attr in ("creatingUser", "modifyingUser"):
            if el.get(attr):
                assert el.get(attr).lower() in users, f"{name} {attr} is not a User"
        target = (el.get("targetGUID") or "").lower()
        want = {"CodeRef": "Code", "NoteRef": "Note", "SelectionRef": "PlainTextSelection",
                "SourceRef": "TextSource", "VariableRef": "Variable"}.get(name)
        if want:
            assert target in by_kind.get(want, set()), f"{name} targetGUID {target} is no {want}"
    for src in root.iter(P + "TextSource"):
        path = src.get("plainTextPath")
        inline = src.find(P + "PlainTextContent")
        assert (path is None) != (inline is None), "a TextSource needs PlainTextContent or plainTextPath, not both"
        text = inline.text if inline is not None else None
        if path:
            assert path.startswith("internal://")
            member = "sources/" + path[len("internal://"):]
            assert member in zf.namelist(), f"{member} missing from the archive"
            text = zf.read(member).decode("utf-8")
        for sel in src.iter(P + "PlainTextSelection"):
            a, b = int(sel.get("startPosition")), int(sel.get("endPosition"))
            assert 0 <= a <= b <= len(text), f"selection {a}-{b} outside a {len(text)}-character source"
    for note in root.iter(P + "Note"):
        assert note.find(P + "PlainTextContent") is not None or note.get("plainTextPath")
    return root


# --- a project laid out as NVivo and QualCoder write them -------------------------------------

G = {k: f"{i:08x}-0000-4000-8000-{i:012x}" for i, k in enumerate(
    "alice bob carol s1 s2 disc cons choice emp exp lived misc p1 ana team vrole vtrust vage "
    "sel1 sel1b sel2 sel3 selA selA2 selB casesel1 casesel2 note1".split(), start=1)}
S1_TEXT = ("Interviewer: Why involve service users?\r\n"
           "P1: Because they are customers, and customers should choose.\r\n"
           "P1: People with lived experience know things we never will.\r\n"
           "Interviewer: Anything else?\r\n"
           "P1: Honestly, the car park is a disgrace.\r\n")
S2_TEXT = ("INT: Tell me about the café group.\n"
           "Ana: It's about people finally having a say 😀 in how things are run.\n"
           "Ana: And we get to choose where we go, like customers.\n")
PHRASES = {
    "sel1": (S1_TEXT, "Because they are customers, and customers should choose."),
    "sel2": (S1_TEXT, "People with lived experience know things we never will."),
    "sel3": (S1_TEXT, "Honestly, the car park is a disgrace."),
    "selA": (S2_TEXT, "people finally having a say 😀 in how things are run"),
    "selB": (S2_TEXT, "we get to choose where we go, like customers"),
}


def span(key):
    text, phrase = PHRASES[key]
    a = text.index(phrase)
    return a, a + len(phrase)


def sel(key, guid, user, *codings):
    """A PlainTextSelection on PHRASES[key]; codings are (number, user, code, with_note)."""
    a, b = span(key)
    inner = ""
    for n, u, c, note in codings:
        ref = f'<NoteRef targetGUID="{G["note1"]}"/>' if note else ""
        inner += (f'<Coding guid="{G["note1"][:-3]}{n:03d}" creatingUser="{G[u]}" creationDateTime="2023-05-02T10:00:00Z">'
                  f'<CodeRef targetGUID="{G[c]}"/>{ref}</Coding>')
    return (f'<PlainTextSelection guid="{G[guid]}" name="" startPosition="{a}" endPosition="{b}" '
            f'creatingUser="{G[user]}" creationDateTime="2023-05-02T10:00:00Z">{inner}</PlainTextSelection>')


def case_span(start_phrase, end_phrase):
    return S1_TEXT.index(start_phrase), S1_TEXT.index(end_phrase) + len(end_phrase)


def nvivo_like_qde() -> str:
    c1 = case_span("P1: Because", "we never will.")
    c2 = case_span("P1: Honestly", "a disgrace.")
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<Project name="SUI interviews" origin="NVivo 14.23" creationDateTime="2023-05-01T09:00:00Z"
  creatingUserGUID="{G['alice']}" xmlns="urn:QDA-XML:project:1.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <Users><User guid="{G['alice']}" name="Alice" id="AL"/><User guid="{G['bob']}" name="Bob"/><User guid="{G['carol']}" name="Carol"/></Users>
 <CodeBook><Codes>
  <Code guid="{G['disc']}" name="Discourses" isCodable="false">
   <Code guid="{G['cons']}" name="Consumer" isCodable="true" color="#FF0000"><Description>Users as customers.</Description>
    <Code guid="{G['choice']}" name="Choice of provider" isCodable="true"/>
   </Code>
   <Code guid="{G['emp']}" name="Empowered public" isCodable="true"/>
  </Code>
  <Code guid="{G['exp']}" name="Expertise" isCodable="true"><Code guid="{G['lived']}" name="Lived experience" isCodable="true"/></Code>
  <Code guid="{G['misc']}" name="Misc" isCodable="true"/>
  <Code guid="{G['p1']}" name="P1" isCodable="true"/>
 </Codes></CodeBook>
 <Variables>
  <Variable guid="{G['vrole']}" name="Role" typeOfVariable="Text"/>
  <Variable guid="{G['vtrust']}" name="Trust" typeOfVariable="Text"/>
  <Variable guid="{G['vage']}" name="Age" typeOfVariable="Text"/>
 </Variables>
 <Cases>
  <Case guid="{G['p1']}" name="P1">
   <VariableValue><VariableRef targetGUID="{G['vrole']}"/><TextValue>psychiatrist</TextValue></VariableValue>
   <VariableValue><VariableRef targetGUID="{G['vtrust']}"/><TextValue>B</TextValue></VariableValue>
   <VariableValue><VariableRef targetGUID="{G['vage']}"/><TextValue>40-49</TextValue></VariableValue>
  </Case>
  <Case guid="{G['ana']}" name="Ana">
   <VariableValue><VariableRef targetGUID="{G['vrole']}"/><TextValue>commissioner</TextValue></VariableValue>
   <VariableValue><VariableRef targetGUID="{G['vtrust']}"/><TextValue>C</TextValue></VariableValue>
   <SourceRef targetGUID="{G['s2']}"/>
  </Case>
  <Case guid="{G['team']}" name="Team">
   <VariableValue><VariableRef targetGUID="{G['vrole']}"/><TextValue>carer</TextValue></VariableValue>
   <SelectionRef targetGUID="{G['selA']}"/>
  </Case>
 </Cases>
 <Sources>
  <TextSource guid="{G['s1']}" name="Interview 01.docx" plainTextPath="internal://{G['s1']}.txt"
    richTextPath="internal://{G['s1']}.docx" creatingUser="{G['alice']}" creationDateTime="2023-05-01T09:00:00Z">
   {sel('sel1', 'sel1', 'alice', (1, 'alice', 'cons', False), (2, 'bob', 'choice', False), (3, 'bob', 'cons', False))}
   {sel('sel2', 'sel2', 'alice', (4, 'alice', 'lived', True))}
   {sel('sel3', 'sel3', 'alice', (5, 'alice', 'misc', False))}
   <PlainTextSelection guid="{G['casesel1']}" startPosition="{c1[0]}" endPosition="{c1[1]}" creatingUser="{G['alice']}">
    <Coding guid="{G['note1'][:-3]}006" creatingUser="{G['alice']}"><CodeRef targetGUID="{G['p1']}"/></Coding></PlainTextSelection>
   <PlainTextSelection guid="{G['casesel2']}" startPosition="{c2[0]}" endPosition="{c2[1]}" creatingUser="{G['alice']}">
    <Coding guid="{G['note1'][:-3]}007" creatingUser="{G['alice']}"><CodeRef targetGUID="{G['p1']}"/></Coding></PlainTextSelection>
  </TextSource>
  <TextSource guid="{G['s2']}" name="Interview 02" plainTextPath="internal://{G['s2']}.txt" creatingUser="{G['carol']}">
   {sel('selA', 'selA', 'carol', (8, 'carol', 'emp', False))}
   {sel('selA', 'selA2', 'carol', (9, 'carol', 'misc', False))}
   {sel('selB', 'selB', 'carol', (10, 'carol', 'choice', False))}
  </TextSource>
  <PictureSource guid="{G['note1'][:-3]}099" name="photo" path="internal://x.png"/>
 </Sources>
 <Notes><Note guid="{G['note1']}" name="memo"><PlainTextContent>Alice: strong example</PlainTextContent></Note></Notes>
</Project>"""


def write_qdpx(path: Path, qde: str, sources: dict[str, bytes], folder: str = "sources") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project.qde", qde.encode("utf-8"))
        for name, data in sources.items():
            zf.writestr(f"{folder}/{name}", data)
    return path


@pytest.fixture
def nvivo_project(tmp_path):
    """Two interviews: one with Windows line ends (NVivo), one UTF-8 with a BOM (QualCoder)."""
    return write_qdpx(tmp_path / "sui.qdpx", nvivo_like_qde(), {
        f"{G['s1']}.txt": S1_TEXT.encode("utf-8"),
        f"{G['s2']}.txt": b"\xef\xbb\xbf" + S2_TEXT.encode("utf-8"),
        f"{G['s1']}.docx": b"PK not really a docx",
    })


# --- import ---------------------------------------------------------------------------------


def test_reads_nested_codebook_sources_users_and_cases(nvivo_project):
    proj = read_qdpx(nvivo_project)
    assert proj.origin.startswith("NVivo")
    assert set(proj.users.values()) == {"Alice", "Bob", "Carol"}
    assert proj.codes["path"].tolist() == [
        "Discourses", "Discourses/Consumer", "Discourses/Consumer/Choice of provider",
        "Discourses/Empowered public", "Expertise", "Expertise/Lived experience", "Misc"]  # case node P1 is not a code
    assert proj.codes.set_index("path").loc["Discourses", "codable"] == False  # noqa: E712
    assert proj.sources["name"].tolist() == ["Interview 01.docx", "Interview 02"]
    assert proj.sources["text"].tolist() == [S1_TEXT, S2_TEXT]  # CRLF kept, BOM dropped
    for r in proj.codings.itertuples():
        assert r.text == proj.sources.set_index("guid").loc[r.source_guid, "text"][r.start:r.end]
    assert set(proj.codings["coder"]) == {"Alice", "Bob", "Carol"}
    assert proj.codings.set_index("code").loc["Expertise/Lived experience", "note"] == "Alice: strong example"
    p1 = proj.cases.set_index("name").loc["P1", "variables"]
    assert p1 == {"Role": "psychiatrist", "Trust": "B", "Age": "40-49"}
    assert any("PictureSource" in w for w in proj.warnings)


def test_import_with_a_map_gives_coded_rows_per_coder_with_role_and_trust(nvivo_project, book):
    code_map = read_code_map(DATA / "map.yaml", book.ids)
    coded, report = import_qdpx(nvivo_project, code_map, book.ids)
    assert coded.columns.tolist() == ["text", "codes", "coder", "source", "start", "end", "role", "trust"]
    got = [(r.source, r.text, r.codes, r.coder, r.role, r.trust) for r in coded.itertuples()]
    assert got == [
        ("Interview 01.docx", PHRASES["sel1"][1], "consumer", "Alice", "psychiatrist", "B"),
        ("Interview 01.docx", PHRASES["sel1"][1], "consumer", "Bob", "psychiatrist", "B"),
        ("Interview 01.docx", PHRASES["sel2"][1], "expertise", "Alice", "psychiatrist", "B"),
        ("Interview 02", PHRASES["selA"][1], "empowered", "Carol", "carer", "C"),  # SelectionRef case beats SourceRef
        ("Interview 02", PHRASES["selB"][1], "consumer", "Carol", "commissioner", "C"),
    ]
    assert (coded.loc[0, "start"], coded.loc[0, "end"]) == span("sel1")  # \r\n counted as two code points
    assert (coded.loc[3, "start"], coded.loc[3, "end"]) == span("selA")  # the emoji is one code point
    skipped = [r for r in report if "skipped" in r]
    assert len(skipped) == 1 and "Misc" in skipped[0] and "Interview 01.docx" in skipped[0]
    assert any("old code" in r and "matches no code" in r for r in report)


def test_import_without_a_map_uses_names_equal_to_codebook_ids(nvivo_project, book):
    coded, report = import_qdpx(nvivo_project, None, book.ids)
    got = sorted((r.text[:20], r.coder, r.codes) for r in coded.itertuples())
    assert got == [("Because they are cus", "Alice", "consumer"), ("Because they are cus", "Bob", "consumer")]
    assert sum("skipped" in r for r in report) == 4  # Lived experience, Misc, Empowered public, Choice of provider
    cov = code_coverage(read_qdpx(nvivo_project), None, book.ids)
    assert cov.iloc[0]["mapped_to"] == "" and set(cov.loc[cov.mapped_to != "", "code"]) == {"Discourses/Consumer"}


def test_imported_table_is_valid_training_data(nvivo_project, book, tmp_path):
    coded, _ = import_qdpx(nvivo_project, read_code_map(DATA / "map.yaml", book.ids), book.ids)
    from discourse.tables import write_table

    write_table(coded, tmp_path / "coded.csv")
    back = read_coded(tmp_path / "coded.csv", book.ids)
    assert back["codes"].tolist() == [[c] for c in coded["codes"]]


def test_atlas_counts_windows_line_ends_as_one(tmp_path, book):
    text = "Interviewer: Why?\r\nR: Because customers should choose.\r\n"
    phrase = "customers should choose"
    a = text.replace("\r\n", "\n").index(phrase)
    qde = f"""<?xml version="1.0" encoding="utf-8"?>
<Project xmlns="urn:QDA-XML:project:1.0" name="a" origin="ATLAS.ti for Windows 23.2">
<CodeBook><Codes><Code guid="{G['cons']}" name="consumer" isCodable="true"/></Codes></CodeBook>
<Sources><TextSource guid="{G['s1']}" name="d" plainTextPath="internal://{G['s1']}.txt">
<PlainTextSelection guid="{G['sel1']}" startPosition="{a}" endPosition="{a + len(phrase)}">
<Coding guid="{G['sel2']}"><CodeRef targetGUID="{G['cons']}"/></Coding></PlainTextSelection></TextSource></Sources></Project>"""
    path = write_qdpx(tmp_path / "a.qdpx", qde, {f"{G['s1']}.txt": text.encode("utf-8")}, folder="Sources")
    coded, _ = import_qdpx(path, None, book.ids)
    assert coded["text"].tolist() == [phrase] and coded["coder"].tolist() == ["unknown"]


def test_pdf_text_representations_and_inline_text_are_read(tmp_path, book):
    text = "R: Patients are customers and should be treated as such."
    a = text.index("customers")
    coding = f'<Coding guid="{G["sel3"]}"><CodeRef targetGUID="{G["cons"]}"/></Coding>'
    qde = f"""<Project xmlns="urn:QDA-XML:project:1.0" name="p" origin="MAXQDA 2022">
<CodeBook><Codes><Code guid="{G['cons']}" name="Consumer" isCodable="true"/></Codes></CodeBook>
<Sources>
 <PDFSource guid="{G['s1']}" name="Report.pdf" path="internal://{G['s1']}.pdf">
  <Representation guid="{G['s2']}" plainTextPath="internal://{G['s2']}.txt">
   <PlainTextSelection guid="{G['sel1']}" startPosition="{a}" endPosition="{a + 9}">{coding}</PlainTextSelection>
  </Representation></PDFSource>
 <TextSource guid="{G['carol']}" name="Memo"><PlainTextContent>{text}</PlainTextContent>
  <PlainTextSelection guid="{G['sel2']}" startPosition="{a}" endPosition="{a + 9}">{coding.replace(G['sel3'], G['selB'])}</PlainTextSelection>
 </TextSource></Sources></Project>"""
    path = write_qdpx(tmp_path / "m.qdpx", qde, {f"{G['s2']}.txt": text.encode(), f"{G['s1']}.pdf": b"%PDF"})
    coded, _ = import_qdpx(path, None, book.ids)
    assert coded[["source", "text", "codes"]].values.tolist() == [["Memo", "customers", "consumer"],
                                                                   ["Report.pdf", "customers", "consumer"]]


def test_map_errors_name_the_file_and_key(tmp_path, book):
    bad = tmp_path / "map.yaml"
    bad.write_text("Consumer: customers\n", encoding="utf-8")
    with pytest.raises(DiscourseError, match="'Consumer' maps to 'customers', which is not in the codebook"):
        read_code_map(bad, book.ids)
    bad.write_text("Consumer: [consumer\n", encoding="utf-8")
    with pytest.raises(DiscourseError, match="bad YAML at line"):
        read_code_map(bad, book.ids)
    bad.write_text("- consumer\n", encoding="utf-8")
    with pytest.raises(DiscourseError, match="YAML mapping"):
        read_code_map(bad, book.ids)


def test_extracted_sources_are_transcripts_with_manifest_and_speakers(nvivo_project, tmp_path):
    proj = read_qdpx(nvivo_project)
    manifest, speakers, warnings = extract_sources(proj, tmp_path / "study")
    assert manifest[["doc_id", "file", "trust"]].values.tolist() == [
        ["Interview_01", "transcripts/Interview_01.txt", "B"], ["Interview_02", "transcripts/Interview_02.txt", "C"]]
    assert (tmp_path / "study" / "transcripts" / "Interview_01.txt").read_bytes() == S1_TEXT.encode("utf-8")
    roles = {(r.doc_id, r.speaker): r.role for r in speakers.itertuples()}
    assert roles == {("Interview_01", "Interviewer"): "interviewer", ("Interview_01", "P1"): "psychiatrist",
                     ("Interview_02", "INT"): "interviewer", ("Interview_02", "Ana"): "commissioner"}
    from discourse.manifest import read_manifest, read_speakers
    from discourse.study import read_study

    study = read_study(read_manifest(tmp_path / "study" / "manifest.csv"), read_speakers(tmp_path / "study" / "speakers.csv"))
    assert not study.skipped and not study.warnings
    assert {d.doc_id: d.text for d in study.documents} == {"Interview_01": S1_TEXT, "Interview_02": S2_TEXT}


# --- a QualCoder-style project: a folder of codes, one selection per code ----------------------

HAND_TEXT = ("Interviewer: What does involvement mean to you?\r\n"
             "Anne: It's about having a real say, the café group gave us power 😀, and they had to listen.\r\n"
             "Interviewer: And the surveys?\r\n"
             "Anne: The survey tells them whether customers are happy. Zoë thinks it's marketing.\r\n"
             "Anne: Honestly, the car park is a disgrace.\r\n")


def hand_span(first, last=None):
    a = HAND_TEXT.index(first)
    return a, HAND_TEXT.index(last or first, a) + len(last or first)


def hand_qdpx(tmp_path, selections):
    """QualCoder's layout: folder Discourses (not codable) > Consumer, Empowered public; then Car park (misc),
    Expertise. ``selections`` are (span, code key in G), one coding each."""
    sels = "".join(
        f'<PlainTextSelection guid="{G["note1"][:-3]}{i + 100:03d}" startPosition="{a}" endPosition="{b}" '
        f'creatingUser="{G["alice"]}"><Coding guid="{G["note1"][:-3]}{i + 200:03d}" creatingUser="{G["alice"]}">'
        f'<CodeRef targetGUID="{G[code]}"/></Coding></PlainTextSelection>'
        for i, ((a, b), code) in enumerate(selections))
    qde = f"""<?xml version="1.0" encoding="UTF-8"?>
<Project xmlns="urn:QDA-XML:project:1.0" name="hand" origin="QualCoder 3.5">
<Users><User guid="{G['alice']}" name="Ruth"/></Users>
<CodeBook><Codes>
 <Code guid="{G['disc']}" name="Discourses" isCodable="false">
  <Code guid="{G['cons']}" name="Consumer" isCodable="true"/><Code guid="{G['emp']}" name="Empowered public" isCodable="true"/>
 </Code>
 <Code guid="{G['misc']}" name="Car park" isCodable="true"/><Code guid="{G['exp']}" name="Expertise" isCodable="true"/>
</Codes></CodeBook>
<Variables><Variable guid="{G['vrole']}" name="Role" typeOfVariable="Text"/></Variables>
<Cases><Case guid="{G['ana']}" name="Anne">
 <VariableValue><VariableRef targetGUID="{G['vrole']}"/><TextValue>service_user</TextValue></VariableValue>
 <SourceRef targetGUID="{G['s1']}"/></Case></Cases>
<Sources><TextSource guid="{G['s1']}" name="Interview 01.txt" plainTextPath="internal://{G['s1']}.txt">{sels}</TextSource></Sources>
</Project>"""
    return write_qdpx(tmp_path / "hand.qdpx", qde, {f"{G['s1']}.txt": HAND_TEXT.encode("utf-8")})


def test_an_uncovered_code_beside_a_covered_one_is_named_once_with_its_selections(tmp_path, book):
    say = hand_span("It's about", "had to listen.")
    survey = hand_span("The survey tells them whether customers are happy.")
    path = hand_qdpx(tmp_path, [(say, "emp"), (say, "exp"), (survey, "emp"), (survey, "exp"),
                                (hand_span("Honestly, the car park is a disgrace."), "misc")])
    coded, report = import_qdpx(path, None, book.ids)
    assert coded["codes"].tolist() == ["expertise", "expertise"]  # the rows are as before
    named = [r for r in report if "Discourses/Empowered public" in r]
    assert named == [("QDA code 'Discourses/Empowered public' (on 2 selections) maps to no codebook id and is left "
                      "out: give it a --map entry ('Discourses/Empowered public: <codebook id>', or null to drop it)")]
    assert sum("'Car park' (on 1 selection)" in r for r in report) == 1  # named once, and its selection skipped
    assert sum("skipped, coded only with 'Car park'" in r for r in report) == 1
    quiet = tmp_path / "map.yaml"
    quiet.write_text("Expertise: expertise\nEmpowered public: null\nCar park: null\n", encoding="utf-8")
    coded, report = import_qdpx(path, read_code_map(quiet, book.ids), book.ids)
    assert coded["codes"].tolist() == ["expertise", "expertise"] and report == []  # null: dropped on purpose


def test_a_selection_over_two_speakers_turns_is_kept_and_warned_of_once(tmp_path, book):
    two = hand_span("and they had to listen.", "And the surveys?")
    label_only = hand_span("and they had to listen.", "Interviewer:")
    one = hand_span("The survey tells", "a disgrace.")  # two turns of one speaker
    trailing = (hand_span("Honestly")[0], len(HAND_TEXT))  # ends with the line's \r\n
    path = hand_qdpx(tmp_path, [(two, "exp"), (label_only, "exp"), (one, "cons"), (trailing, "cons")])
    coded, report = import_qdpx(path, None, book.ids)
    assert len(coded) == 4 and set(coded["role"]) == {"service_user"}  # kept as selected, with the case's role
    crossing = [r for r in report if "speaker" in r]
    assert len(crossing) == 1
    assert crossing[0].startswith(f"2 coded excerpts run over more than one speaker's turn (the first: source "
                                  f"'Interview 01.txt' {label_only[0]}-{label_only[1]}, Anne, Interviewer)")
    _, report = import_qdpx(hand_qdpx(tmp_path, [(one, "cons"), (trailing, "cons")]), None, book.ids)
    assert not any("speaker" in r for r in report)


# --- bad archives -----------------------------------------------------------------------------


def broken(tmp_path, qde=None, sources=None, drop_source=False):
    qde = qde if qde is not None else nvivo_like_qde()
    srcs = sources if sources is not None else {f"{G['s1']}.txt": S1_TEXT.encode(), f"{G['s2']}.txt": S2_TEXT.encode()}
    if drop_source:
        srcs.pop(f"{G['s2']}.txt")
    return write_qdpx(tmp_path / "bad.qdpx", qde, srcs)


def test_not_a_zip(tmp_path):
    p = tmp_path / "x.qdpx"
    p.write_text("<Project/>")
    with pytest.raises(DiscourseError, match="not a zip archive") as e:
        read_qdpx(p)
    assert str(p) in str(e.value)


def test_no_project_qde(tmp_path):
    p = tmp_path / "x.qdpx"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("sources/a.txt", "hello")
    with pytest.raises(DiscourseError, match="no project.qde"):
        read_qdpx(p)


def test_other_qde_name_is_accepted(tmp_path, nvivo_project):
    p = tmp_path / "atlas.qdpx"
    with zipfile.ZipFile(nvivo_project) as src, zipfile.ZipFile(p, "w") as dst:
        for n in src.namelist():
            dst.writestr("My Project.qde" if n == "project.qde" else n, src.read(n))
    assert len(read_qdpx(p).codings) == 8


def test_unparseable_xml_names_the_line(tmp_path):
    qde = nvivo_like_qde().replace("<Users>", "<Users><User guid='x' name='a & b'/>", 1)
    with pytest.raises(DiscourseError, match=r"project.qde line 4, column \d+: the XML is not well-formed"):
        read_qdpx(broken(tmp_path, qde))


def test_wrong_root(tmp_path):
    with pytest.raises(DiscourseError, match="root element is <CodeBook>, not <Project>"):
        read_qdpx(broken(tmp_path, '<CodeBook xmlns="urn:QDA-XML:codebook:1.0"><Codes/></CodeBook>'))


def test_selection_beyond_its_source(tmp_path):
    a, b = span("selB")
    qde = nvivo_like_qde().replace(f'endPosition="{b}"', f'endPosition="{len(S2_TEXT) + 5}"')
    with pytest.raises(DiscourseError, match=rf"PlainTextSelection guid={G['selB']} in TextSource 'Interview 02': "
                                             rf"endPosition {len(S2_TEXT) + 5} is beyond .*\({len(S2_TEXT)} characters\)"):
        read_qdpx(broken(tmp_path, qde))


def test_coding_with_an_unknown_code(tmp_path):
    qde = nvivo_like_qde().replace(f'<CodeRef targetGUID="{G["lived"]}"/>', '<CodeRef targetGUID="deadbeef-0000-4000-8000-000000000000"/>')
    with pytest.raises(DiscourseError, match=rf"Coding guid=.* in PlainTextSelection guid={G['sel2']} in TextSource "
                                             r"'Interview 01.docx'.*targetGUID deadbeef-0000-4000-8000-000000000000 is not a Code"):
        read_qdpx(broken(tmp_path, qde))


def test_source_file_missing_from_the_archive(tmp_path):
    with pytest.raises(DiscourseError, match=rf"TextSource guid={G['s2']} name='Interview 02': plainTextPath "
                                             rf"internal://{G['s2']}.txt .* not in the archive"):
        read_qdpx(broken(tmp_path, drop_source=True))


# --- export -----------------------------------------------------------------------------------

D1 = "Interviewer: Why?\r\nR: We measure satisfaction like a hotel does.\r\nR: Users know things we don't. 😀 Really.\r\n"
D2 = "I: And?\nP2: Power should move to the people we serve.\nP2: It is what it is, frankly.\n"


def excerpt(doc, text, phrase, turn, speaker, role, trust, codes, probs, eid):
    a = text.index(phrase)
    row = {"excerpt_id": eid, "doc_id": doc, "turn": turn, "speaker": speaker, "role": role, "text": phrase,
           "start": a, "end": a + len(phrase), "n_sentences": 1, "n_words": len(phrase.split()), "trust": trust}
    row.update({f"p_{c}": probs.get(c, 0.01) for c in ["empowered", "consumer", "stakeholder", "responsible", "therapeutic", "expertise"]})
    row.update({"codes": codes, "confidence": 0.9})
    return row


@pytest.fixture
def outdir(tmp_path):
    """A tiny `discourse classify` output folder, made by hand."""
    out = tmp_path / "out"
    (out / "texts").mkdir(parents=True)
    for doc, text in (("D1", D1), ("D2", D2)):
        with open(out / "texts" / f"{doc}.txt", "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    pred = pd.DataFrame([
        excerpt("D1", D1, "We measure satisfaction like a hotel does.", 1, "R", "chief_executive", "A", "consumer", {"consumer": 0.91}, "e1"),
        excerpt("D1", D1, "Users know things we don't. 😀 Really.", 2, "R", "chief_executive", "A", "empowered;expertise",
                {"expertise": 0.8, "empowered": 0.55}, "e2"),
        excerpt("D2", D2, "Power should move to the people we serve.", 1, "P2", "psychiatrist", "B", "empowered", {"empowered": 0.77}, "e3"),
        excerpt("D2", D2, "It is what it is, frankly.", 2, "P2", "psychiatrist", "B", "", {}, "e4"),
    ])
    pred.to_parquet(out / "predictions.parquet", index=False)
    turns = pd.DataFrame([
        {"doc_id": "D1", "turn": 0, "speaker": "Interviewer", "role": "interviewer", "trust": "A", "text": "Why?"},
        {"doc_id": "D1", "turn": 1, "speaker": "R", "role": "chief_executive", "trust": "A", "text": "..."},
        {"doc_id": "D2", "turn": 0, "speaker": "I", "role": "interviewer", "trust": "B", "text": "And?"},
        {"doc_id": "D2", "turn": 1, "speaker": "P2", "role": "psychiatrist", "trust": "B", "text": "..."},
    ])
    turns.to_parquet(out / "turns.parquet", index=False)
    (out / "run.json").write_text(json.dumps({"model": {"folder": "default", "thresholds": {"consumer": 0.4, "empowered": 0.5}}}))
    return out


def test_export_obeys_the_schema_and_keeps_exact_spans(outdir, book, tmp_path):
    counts = export_qdpx(outdir, book, tmp_path / "r.qdpx")
    assert counts == {"documents": 2, "selections": 3, "codings": 4, "cases": 4}
    data = (tmp_path / "r.qdpx").read_bytes()
    root = check_qdpx(data)
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert all(n == "project.qde" or n.startswith("sources/") for n in zf.namelist())
    texts = {s.get("name"): zf.read("sources/" + s.get("plainTextPath")[11:]).decode() for s in root.iter(P + "TextSource")}
    assert texts == {"D1": D1.replace("\r\n", "\n"), "D2": D2}  # \n line ends for every tool
    pred = pd.read_parquet(outdir / "predictions.parquet")
    for s in root.iter(P + "TextSource"):
        for sel in s.iter(P + "PlainTextSelection"):
            eid = sel.get("name").split()[-1]
            r = pred.set_index("excerpt_id").loc[eid]
            assert texts[s.get("name")][int(sel.get("startPosition")):int(sel.get("endPosition"))] == r.text
            refs = {c.find(P + "CodeRef").get("targetGUID") for c in sel.iter(P + "Coding")}
            names = {c.get("guid"): c.get("name") for c in root.iter(P + "Code")}
            assert sorted(names[g] for g in refs) == sorted(r.codes.split(";"))
            assert all(c.find(P + "NoteRef") is not None for c in sel.iter(P + "Coding"))
    notes = {n.get("guid"): n.find(P + "PlainTextContent").text for n in root.iter(P + "Note")}
    code_names = {c.get("guid"): c.get("name") for c in root.iter(P + "Code")}
    e2_expertise = [c for c in root.iter(P + "Coding") if code_names[c.find(P + "CodeRef").get("targetGUID")] == "expertise"]
    assert "= 0.8000" in notes[e2_expertise[0].find(P + "NoteRef").get("targetGUID")]
    assert [u.get("name") for u in root.iter(P + "User")] == ["discourse model"]
    cases = {c.get("name"): c for c in root.iter(P + "Case")}
    assert set(cases) == {"D1/Interviewer", "D1/R", "D2/I", "D2/P2"}
    assert len(cases["D1/R"].findall(P + "SelectionRef")) == 2 and not cases["D1/Interviewer"].findall(P + "SelectionRef")
    values = [v.find(P + "TextValue").text for v in cases["D2/P2"].iter(P + "VariableValue")]
    assert values == ["psychiatrist", "B"]


def test_the_schema_check_catches_broken_projects(outdir, book, tmp_path):
    export_qdpx(outdir, book, tmp_path / "r.qdpx")
    zf = zipfile.ZipFile(tmp_path / "r.qdpx")
    qde = zf.read("project.qde").decode()
    guid = re.search(r'<CodeRef targetGUID="([^"]+)"', qde).group(1)
    for bad in (qde.replace(f'<CodeRef targetGUID="{guid}"', '<CodeRef targetGUID="00000000-0000-0000-0000-000000000000"', 1),
                qde.replace('startPosition="', 'startPosition="9', 1).replace('endPosition="', 'endPosition="99999', 1),
                qde.replace('isCodable="true" ', "", 1),
                qde.replace('creationDateTime="2024-01-01T00:00:00Z"', 'creationDateTime="1 Jan 2024"', 1)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for n in zf.namelist():
                out.writestr(n, bad if n == "project.qde" else zf.read(n))
        with pytest.raises(AssertionError):
            check_qdpx(buf.getvalue())


def test_round_trip_returns_the_same_spans_codes_and_metadata(outdir, book, tmp_path):
    export_qdpx(outdir, book, tmp_path / "r.qdpx")
    coded, report = import_qdpx(tmp_path / "r.qdpx", None, book.ids)
    assert report == []
    pred = pd.read_parquet(outdir / "predictions.parquet")
    pred = pred[pred.codes != ""]
    want = sorted((r.doc_id, r.text, ";".join(sorted(r.codes.split(";"))), r.role, r.trust) for r in pred.itertuples())
    got = sorted((r.source, r.text, r.codes, r.role, r.trust) for r in coded.itertuples())
    assert got == want
    assert set(coded["coder"]) == {"discourse model"}
    d2 = coded[coded.source == "D2"].iloc[0]  # no \r\n in D2: offsets are the classify offsets
    e3 = pred.set_index("excerpt_id").loc["e3"]
    assert (d2.start, d2.end) == (e3.start, e3.end)


def test_export_is_deterministic(outdir, book, tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    export_qdpx(outdir, book, tmp_path / "a.qdpx")
    export_qdpx(outdir, book, tmp_path / "b.qdpx")
    assert (tmp_path / "a.qdpx").read_bytes() == (tmp_path / "b.qdpx").read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    export_qdpx(outdir, book, tmp_path / "c.qdpx")
    qde = zipfile.ZipFile(tmp_path / "c.qdpx").read("project.qde").decode()
    assert 'creationDateTime="2023-11-14T22:13:20Z"' in qde and "2024-01-01" not in qde


def test_export_refuses_codes_outside_the_codebook(outdir, tmp_path):
    small = codebook_from_dict({"name": "x", "codes": [{"id": "consumer", "definition": "customers"}]})
    with pytest.raises(DiscourseError, match="code 'empowered' is assigned in predictions but is not in codebook 'x'"):
        export_qdpx(outdir, small, tmp_path / "r.qdpx")


def test_export_refuses_predictions_that_do_not_match_their_texts(outdir, book, tmp_path):
    (outdir / "texts" / "D2.txt").write_text("I: Something else entirely, longer than before.\n" * 3, encoding="utf-8")
    with pytest.raises(DiscourseError, match="excerpt e3 .* does not match texts/D2.txt"):
        export_qdpx(outdir, book, tmp_path / "r.qdpx")


def test_exported_project_extracts_back_to_a_study(outdir, book, tmp_path):
    export_qdpx(outdir, book, tmp_path / "r.qdpx")
    manifest, speakers, _ = extract_sources(read_qdpx(tmp_path / "r.qdpx"), tmp_path / "study")
    assert manifest[["doc_id", "trust"]].values.tolist() == [["D1", "A"], ["D2", "B"]]
    assert sorted(map(tuple, speakers.values.tolist())) == [
        ("D1", "Interviewer", "interviewer"), ("D1", "R", "chief_executive"), ("D2", "I", "interviewer"), ("D2", "P2", "psychiatrist")]


# --- codebooks ----------------------------------------------------------------------------------


def test_qdc_round_trip_keeps_every_code(book, tmp_path):
    export_qdc(book, tmp_path / "cb.qdc")
    root = ET.parse(tmp_path / "cb.qdc").getroot()
    assert root.tag == "{urn:QDA-XML:codebook:1.0}CodeBook"
    for code in root.iter("{urn:QDA-XML:codebook:1.0}Code"):
        assert GUID.match(code.get("guid")) and code.get("name") and code.get("isCodable") == "true"
    back = codebook_from_dict(import_qdc(tmp_path / "cb.qdc"))
    assert back.codes == book.codes
    assert codebook_qdc_bytes(book) == (tmp_path / "cb.qdc").read_bytes()


def test_qdc_from_another_tool_flattens_nesting_and_makes_valid_ids(tmp_path):
    qdc = tmp_path / "qualcoder.qdc"
    qdc.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<CodeBook xmlns="urn:QDA-XML:codebook:1.0" origin="QualCoder 3.6"><Codes>
 <Code guid="{G['disc']}" name="Discourses" isCodable="false">
  <Code guid="{G['cons']}" name="Consumer" isCodable="true"><Description>Users as   customers
   who choose.</Description>
   <Code guid="{G['choice']}" name="Choice of provider" isCodable="true"/></Code>
 </Code>
 <Code guid="{G['exp']}" name="Éxpertise!" isCodable="true"/>
 <Code guid="{G['misc']}" name="2nd thoughts"/>
 <Code guid="{G['lived']}" name="expertise" isCodable="true"/>
</Codes></CodeBook>""", encoding="utf-8-sig")
    data = import_qdc(qdc)
    got = [(c["id"], c["label"], c["definition"]) for c in data["codes"]]
    assert got == [
        ("discourses_consumer", "Discourses/Consumer", "Users as customers who choose."),
        ("discourses_consumer_choice_of_provider", "Discourses/Consumer/Choice of provider",
         "Discourses/Consumer/Choice of provider (no description in the QDA codebook)"),
        ("expertise", "Éxpertise!", "Éxpertise! (no description in the QDA codebook)"),
        ("c_2nd_thoughts", "2nd thoughts", "2nd thoughts (no description in the QDA codebook)"),
        ("expertise_2", "expertise", "expertise (no description in the QDA codebook)"),
    ]
    assert slug("Parent/Child") == "parent_child"


def test_qdc_errors_name_the_problem(tmp_path):
    p = tmp_path / "x.qdc"
    p.write_text('<?xml version="1.0"?>\n<CodeBook xmlns="urn:QDA-XML:codebook:1.0">\n<Codes><Code name="a"></Codes></CodeBook>')
    with pytest.raises(DiscourseError, match=r"line 3, column \d+: the XML is not well-formed"):
        import_qdc(p)
    p.write_text('<Project xmlns="urn:QDA-XML:project:1.0" name="x"/>')
    with pytest.raises(DiscourseError, match="not <CodeBook>"):
        import_qdc(p)
    p.write_text('<CodeBook xmlns="urn:QDA-XML:codebook:1.0"><Codes><Code guid="x" name="Folder" isCodable="false"/></Codes></CodeBook>')
    with pytest.raises(DiscourseError, match="no codable codes"):
        import_qdc(p)


# --- the commands -------------------------------------------------------------------------------


@pytest.fixture
def cli_run(run_cli):
    from discourse.cli import cli
    from discourse.cli_exchange import add_exchange_commands

    if "import-qdpx" not in cli.commands:
        add_exchange_commands(cli)
    return run_cli


def test_cli_import_qdpx_with_map_and_sources(cli_run, nvivo_project, tmp_path):
    code, out, err = cli_run("import-qdpx", nvivo_project, "--map", DATA / "map.yaml", "-o", tmp_path / "coded.csv",
                             "--sources", tmp_path / "study")
    assert code == 0, err
    assert "5 coded excerpts (3 coders, 2 sources; 1 skipped)" in out
    assert "warning:" in err and "Misc" in err
    df = pd.read_csv(tmp_path / "coded.csv", keep_default_na=False)
    assert df["codes"].tolist() == ["consumer", "consumer", "expertise", "empowered", "consumer"]
    assert (tmp_path / "study" / "manifest.csv").exists() and (tmp_path / "study" / "speakers.csv").exists()


def test_cli_import_qdpx_without_a_usable_map_says_what_to_do(cli_run, tmp_path):
    qde = nvivo_like_qde().replace('name="Consumer"', 'name="Customers"').replace('name="Expertise"', 'name="Knowing"')
    p = broken(tmp_path, qde)
    code, out, err = cli_run("import-qdpx", p, "-o", tmp_path / "coded.csv", "--sources", tmp_path / "study")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--map" in last and "'Misc'" in last
    assert not (tmp_path / "coded.csv").exists() and not (tmp_path / "study").exists()  # nothing half-written


def test_cli_bad_archive_is_one_line_exit_2(cli_run, tmp_path):
    p = tmp_path / "x.qdpx"
    p.write_bytes(b"not a zip")
    code, out, err = cli_run("import-qdpx", p, "-o", tmp_path / "c.csv")
    assert code == 2 and err.count("\n") == 1 and "not a zip archive" in err


def test_cli_codebook_both_ways(cli_run, tmp_path, book):
    code, out, err = cli_run("export-qdc", "-o", tmp_path / "cb.qdc")
    assert code == 0, err
    code, out, err = cli_run("import-qdc", tmp_path / "cb.qdc", "-o", tmp_path / "cb.yaml")
    assert code == 0, err
    assert load_codebook(tmp_path / "cb.yaml").codes == book.codes


def test_cli_export_qdpx_uses_the_models_codebook(cli_run, outdir, tmp_path):
    code, out, err = cli_run("export-qdpx", outdir, "-o", tmp_path / "r.qdpx")
    assert code == 0, err
    assert "2 documents, 3 coded excerpts, 4 codings, 4 speaker cases" in out
    check_qdpx((tmp_path / "r.qdpx").read_bytes())
    code, out, err = cli_run("export-qdpx", tmp_path, "-o", tmp_path / "r2.qdpx")
    assert code == 2 and "no predictions.parquet" in err


def test_cli_import_qdpx_names_every_uncovered_code_however_many_selections_are_skipped(cli_run, tmp_path):
    say = hand_span("It's about", "And the surveys?")
    car = hand_span("Honestly, the car park is a disgrace.")
    path = hand_qdpx(tmp_path, [(say, "emp"), (say, "exp")] + [((car[0] + i, car[1]), "misc") for i in range(12)])
    code, out, err = cli_run("import-qdpx", path, "-o", tmp_path / "coded.csv")
    assert code == 0, err
    assert "1 coded excerpts (1 coders, 1 sources; 12 skipped)" in out
    lines = err.splitlines()
    assert all(line.startswith("warning: ") for line in lines)
    assert sum("'Discourses/Empowered public' (on 1 selection)" in line for line in lines) == 1
    assert sum("'Car park' (on 12 selections)" in line for line in lines) == 1
    assert sum("1 coded excerpt runs over more than one speaker's turn" in line for line in lines) == 1
    assert lines[-1] == "warning: ... and 2 more skipped selections"


def test_cli_export_qdpx_refuses_another_model_as_report_does(cli_run, outdir, tmp_path):
    from discourse.pipeline import model_fingerprint

    model = ROOT / "models" / "default"
    run = {"model": {"folder": "mine2", "manifest_sha256": "0123456789abcdef", "thresholds": {"consumer": 0.4}}}
    (outdir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    code, _, err = cli_run("export-qdpx", outdir, "--model", model, "-o", tmp_path / "r.qdpx")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "r.qdpx").exists()
    assert "made by model 'mine2' (manifest 0123456789abcdef), not by " + str(model) in err and "--model" in err
    code, _, report_err = cli_run("report", outdir, "--model", model, "-o", tmp_path / "r.html")
    assert code == 2 and "made by model 'mine2'" in report_err  # the same refusal
    run["model"].update(folder="default", manifest_sha256=model_fingerprint(model))
    (outdir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    code, _, err = cli_run("export-qdpx", outdir, "--model", model, "-o", tmp_path / "r.qdpx")
    assert code == 0, err
    (outdir / "run.json").write_text("{not json", encoding="utf-8")
    code, _, err = cli_run("export-qdpx", outdir, "--model", model, "-o", tmp_path / "r3.qdpx")
    assert code == 2 and err.count("\n") == 1 and "run.json: not readable as JSON" in err


# --- with the real pipeline -------------------------------------------------------------------


@pytest.mark.slow
def test_classify_export_import_and_classify_again(cli_run, tmp_path, book, demo_study):
    """Two demo interviews (.txt and .docx) through classify -> .qdpx -> coded table and transcripts -> classify."""
    docs = ["A01", "A02"]
    demo_study(docs)
    code, out, err = cli_run("classify", "--manifest", tmp_path / "study" / "manifest.csv", "-o", tmp_path / "out")
    assert code == 0, err
    code, out, err = cli_run("export-qdpx", tmp_path / "out", "-o", tmp_path / "r.qdpx")
    assert code == 0, err
    check_qdpx((tmp_path / "r.qdpx").read_bytes())
    code, out, err = cli_run("import-qdpx", tmp_path / "r.qdpx", "-o", tmp_path / "coded.csv", "--sources", tmp_path / "back")
    assert code == 0, err
    pred = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    pred = pred[pred.codes != ""]
    coded = pd.read_csv(tmp_path / "coded.csv", keep_default_na=False)
    want = sorted((r.doc_id, int(r.start), int(r.end), ";".join(sorted(r.codes.split(";"))), r.role, r.trust) for r in pred.itertuples())
    got = sorted((r.source, int(r.start), int(r.end), r.codes, r.role, r.trust) for r in coded.itertuples())
    assert len(want) > 10 and got == want
    code, out, err = cli_run("classify", "--manifest", tmp_path / "back" / "manifest.csv", "-o", tmp_path / "again")
    assert code == 0, err
    again = pd.read_parquet(tmp_path / "again" / "predictions.parquet")
    full = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    cols = ["doc_id", "speaker", "role", "trust", "start", "end", "codes"]
    assert again[cols].reset_index(drop=True).equals(full[cols].reset_index(drop=True))


def test_redacted_export_keeps_selections_on_their_words(tmp_path):
    """Redaction rewrites the texts; every selection must still cover the same words around the names."""
    from discourse.redact import Redactor

    redactor = Redactor(names=["Dr Okafor"])
    text = "Dr Okafor said the board in Leeds listened. Then Sarah Jones from Mind spoke about payment."
    red, newpos = redactor.with_offsets(text)
    assert "Okafor" not in red and "Leeds" not in red and "[PERSON]" in red and "[PLACE]" in red
    s = text.index("Then")
    e = text.index("payment.") + len("payment.")
    assert red[newpos(s):newpos(e)].startswith("Then") and red[newpos(s):newpos(e)].endswith("payment.")
    assert newpos(0) == 0 and newpos(len(text)) == len(red)
    assert not Redactor.is_name("R") and not Redactor.is_name("P3") and Redactor.is_name("Dr Okafor")


def test_codes_that_slug_alike_resolve_to_the_ids_import_qdc_gives_them():
    from discourse.qdpx_read import resolve_codes

    codes = pd.DataFrame({"guid": ["g1", "g2", "g3"], "name": ["Экономика", "Забота", "Consumer-choice"],
                          "path": ["Экономика", "Забота", "Consumer-choice"], "codable": [True, True, True]})
    out, _ = resolve_codes(codes, None, ["code", "code_2", "consumer_choice"])
    assert out == {"g1": ["code"], "g2": ["code_2"], "g3": ["consumer_choice"]}  # before: both Cyrillic codes -> code


def test_a_stray_byte_in_a_utf8_source_does_not_shift_positions():
    from discourse.qdpx_xml import decode_source

    good = "R: café, naïve, résumé. Then the real point"
    text, warning = decode_source(good.encode() + b"\xff")
    assert text.index("the real point") == good.index("the real point") and "stray byte" in warning
    text, warning = decode_source("R: café naïve".encode("cp1252"))  # Windows-1252 throughout stays so
    assert text == "R: café naïve" and "Windows-1252" in warning
