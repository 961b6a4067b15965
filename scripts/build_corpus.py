#!/usr/bin/env python
"""Build the corpus tables from the hand-written sources under corpora/src and corpora/demo/src.

Never changes a word: it parses the coders' files, cuts whole training
transcripts into excerpts at the coders' span boundaries and at sentence ends,
renders the demo interviews into their file formats, and locates every gold
span in the canonical text the reader produces.

    python scripts/build_corpus.py            # write corpora/training, corpora/test, corpora/demo
    python scripts/build_corpus.py --check    # fail if the written tables are out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discourse.segment import load_pipeline, sentences_of_turns  # noqa: E402
from discourse.tables import write_table, write_text, zip_bytes, zip_members  # noqa: E402
from discourse.transcripts import parse_text_turns, read_transcript  # noqa: E402

CORPORA = ROOT / "corpora"
SRC = CORPORA / "src"
COLUMNS = ["id", "text", "codes", "role", "register", "batch", "coder", "source"]
MARK = re.compile(r"\{\{([a-z_;\s]*):\s?(.*?)\}\}", re.S)


# --- source formats ------------------------------------------------------------


def read_header(text: str) -> tuple[dict, str]:
    """Split '# key: value' header lines from the body."""
    header, lines = {}, text.split("\n")
    i = 0
    while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
        if lines[i].startswith("#") and ":" in lines[i]:
            k, v = lines[i][1:].split(":", 1)
            header[k.strip()] = v.strip()
        i += 1
    return header, "\n".join(lines[i:])


def parse_speakers(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().strip("[]:").strip()] = v.strip()
    return out


def strip_marks(body: str, where: str) -> tuple[str, list[tuple[int, int, list[str]]]]:
    """Remove {{codes: ...}} marks; return plain text and spans (start, end, codes) into it."""
    plain, spans, pos = [], [], 0
    out_len = 0
    for m in MARK.finditer(body):
        plain.append(body[pos:m.start()])
        out_len += m.start() - pos
        codes = sorted({c.strip() for c in m.group(1).split(";") if c.strip()})
        inner = m.group(2)
        if "{{" in inner:
            raise ValueError(f"{where}: nested or unclosed mark near {inner[:60]!r}")
        lead = len(inner) - len(inner.lstrip())
        spans.append((out_len + lead, out_len + len(inner.rstrip()), codes))
        plain.append(inner)
        out_len += len(inner)
        pos = m.end()
    rest = body[pos:]
    if "{{" in rest or "}}" in rest:
        raise ValueError(f"{where}: unbalanced mark near {rest[rest.find('{{'):][:60]!r}")
    plain.append(rest)
    return "".join(plain), spans


def read_standalone(path: Path) -> pd.DataFrame:
    header, body = read_header(path.read_text(encoding="utf-8"))
    batch, coder = header["batch"], header["coder"].split()[0].strip(",")
    rows, cur, n = [], None, 0
    for line in body.split("\n") + ["@"]:
        if line.startswith("@"):
            if cur is not None:
                text = " ".join(" ".join(cur["lines"]).split())
                if text:
                    n += 1
                    rows.append({
                        "id": f"{batch}-{n:04d}", "text": text, "codes": cur["codes"], "role": cur["role"],
                        "register": cur["register"], "batch": batch, "coder": coder, "source": path.name,
                    })
            if line.strip() == "@":
                cur = None
                continue
            attrs = dict(re.findall(r"(\w+)=(\S*)", line))
            codes = ";".join(sorted({c for c in attrs.get("codes", "").split(";") if c}))
            cur = {"role": attrs.get("role", "other"), "register": attrs.get("register", "interview"),
                   "codes": codes, "lines": []}
        elif cur is not None and line.strip():
            cur["lines"].append(line.strip())
    return pd.DataFrame(rows, columns=COLUMNS)


def read_whole(path: Path):
    """A whole marked-up transcript: (header, plain text, spans, turns with roles)."""
    header, body = read_header(path.read_text(encoding="utf-8"))
    plain, spans = strip_marks(body, str(path))
    speakers = parse_speakers(header.get("speakers", ""))
    turns, _ = parse_text_turns(plain, header.get("doc", path.stem), known_speakers=set(speakers))
    unknown = sorted(set(turns.speaker) - set(speakers))
    if unknown:
        raise ValueError(f"{path}: speaker label(s) {unknown} are not in the '# speakers:' line")
    turns["role"] = turns.speaker.map(speakers)
    for a, b, codes in spans:
        inside = turns[(turns.start <= a) & (b <= turns.end)]
        if inside.empty:
            raise ValueError(f"{path}: span {plain[a:b][:60]!r} crosses a turn boundary")
        if inside.iloc[0].role == "interviewer":
            raise ValueError(f"{path}: span {plain[a:b][:60]!r} codes an interviewer")
    return header, plain, spans, turns


def cut_whole(path: Path, batch: str, coder: str, nlp) -> pd.DataFrame:
    """Cut a whole transcript into training excerpts: coded spans, and uncoded talk in <=3 sentences."""
    header, plain, spans, turns = read_whole(path)
    doc = header.get("doc", path.stem)
    respondents = turns[turns.role != "interviewer"]
    register = "focus_group" if respondents.speaker.nunique() >= 3 else "interview"
    pieces = []  # (start, end, codes, role)
    gaps = []
    for t in respondents.itertuples():
        inside = sorted((a, b, c) for a, b, c in spans if t.start <= a and b <= t.end)
        cur = t.start
        for a, b, c in inside:
            if a > cur:
                gaps.append((cur, a, t.role))
            pieces.append((a, b, ";".join(c), t.role))
            cur = b
        if cur < t.end:
            gaps.append((cur, t.end, t.role))
    sents = sentences_of_turns([plain[a:b] for a, b, _ in gaps], nlp)
    for (a, b, role), ss in zip(gaps, sents):
        for i in range(0, len(ss), 3):
            group = ss[i:i + 3]
            s, e = a + group[0][0], a + group[-1][1]
            if len(re.findall(r"[A-Za-z]+", plain[s:e])) >= 4:
                pieces.append((s, e, "", role))
    rows = []
    for n, (s, e, codes, role) in enumerate(sorted(pieces), start=1):
        rows.append({"id": f"{doc}-{n:03d}", "text": " ".join(plain[s:e].split()), "codes": codes, "role": role,
                     "register": register, "batch": batch, "coder": coder, "source": f"{path.parent.name}/{path.name}"})
    return pd.DataFrame(rows, columns=COLUMNS)


def build_split(folder: Path, nlp) -> pd.DataFrame:
    frames = []
    for p in sorted(folder.glob("b*.txt")):
        frames.append(read_standalone(p))
    for d in sorted(x for x in folder.iterdir() if x.is_dir()):
        batch, coder = d.name.split("_", 1)
        for p in sorted(d.glob("*.txt")):
            frames.append(cut_whole(p, batch, coder.capitalize(), nlp))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return df.sort_values("id", kind="stable").reset_index(drop=True)


def apply_adjudication(df: pd.DataFrame) -> pd.DataFrame:
    """Final labels after double coding: the adjudicated codes replace the first coder's."""
    path = SRC / "double_coding" / "adjudicated.csv"
    if not path.exists():
        return df
    adj = pd.read_csv(path, dtype=str, keep_default_na=False)
    final = dict(zip(adj["id"], adj["final_codes"]))
    df = df.copy()
    df["codes"] = [";".join(sorted(c for c in final[i].split(";") if c)) if i in final else c
                   for i, c in zip(df["id"], df["codes"])]
    return df


# --- demo study ----------------------------------------------------------------


def render_vtt(turns: pd.DataFrame) -> str:
    lines, t = ["WEBVTT", ""], 0.0
    n = 0
    for turn in turns.itertuples():
        parts = [p for p in re.split(r"(?<=[.?!])\s+", " ".join(turn.text.split())) if p]
        chunk = []
        for i, p in enumerate(parts):
            chunk.append(p)
            if len(" ".join(chunk).split()) >= 12 or i == len(parts) - 1:
                words = " ".join(chunk)
                dur = max(1.0, 0.38 * len(words.split()))
                n += 1
                lines += [str(n), f"{_stamp(t)} --> {_stamp(t + dur)}", f"<v {turn.speaker}>{words}</v>", ""]
                t += dur + 0.3
                chunk = []
    return "\n".join(lines)


def _stamp(sec: float) -> str:
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def render_docx(plain: str, path: Path) -> None:
    import docx

    d = docx.Document()
    for line in plain.split("\n"):
        if line.strip():
            d.add_paragraph(line)
    d.core_properties.created = pd.Timestamp("2024-01-01").to_pydatetime()
    d.core_properties.modified = pd.Timestamp("2024-01-01").to_pydatetime()
    d.core_properties.last_modified_by = "discourse corpus"
    d.core_properties.author = "discourse corpus"
    d.core_properties.revision = 1
    d.save(path)
    fixed_zip_times(path)


def fixed_zip_times(path: Path) -> None:
    """Rewrite a zip (docx) with fixed entry timestamps so the same text gives the same bytes."""
    path.write_bytes(zip_bytes(zip_members(path), (2024, 1, 1, 0, 0, 0)))


def locate(canonical: str, span_text: str, pos: int) -> tuple[int, int]:
    words = span_text.split()
    rx = re.compile(r"\s+".join(re.escape(w) for w in words))
    m = rx.search(canonical, pos)
    if not m:
        raise ValueError(f"gold span not found in rendered text: {span_text[:60]!r}")
    return m.start(), m.end()


def build_demo(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Render the demo sources into ``out_dir``; return manifest, speakers and gold tables."""
    design = yaml.safe_load((CORPORA / "demo" / "design.yaml").read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest, speakers, gold = [], [], []
    for src in sorted((CORPORA / "demo" / "src").glob("*.txt")):
        header, plain, spans, turns = read_whole(src)
        doc = header["doc"]
        role, fmt = design["documents"][doc]
        file = out_dir / f"{doc}.{fmt}"
        if fmt == "txt":
            write_text(plain, file)
        elif fmt == "docx":
            render_docx(plain, file)
        else:
            write_text(render_vtt(turns), file)
        spk = parse_speakers(header["speakers"])
        if role not in spk.values():
            raise ValueError(f"{src}: design says respondent role {role}, speakers are {spk}")
        canonical = read_transcript(file, doc_id=doc, known_speakers=set(spk)).text
        pos = 0
        for a, b, codes in spans:
            s, e = locate(canonical, plain[a:b], pos)
            gold.append({"doc_id": doc, "start": s, "end": e, "codes": ";".join(codes), "text": canonical[s:e]})
            pos = e
        manifest.append({"doc_id": doc, "file": f"transcripts/{file.name}", "trust": doc[0],
                         "area": design["trusts"][doc[0]]["setting"], "format": fmt})
        for label, r in spk.items():
            speakers.append({"doc_id": doc, "speaker": label, "role": r})
    return pd.DataFrame(manifest), pd.DataFrame(speakers), pd.DataFrame(gold)


def build(nlp, demo_dir: Path) -> dict[Path, pd.DataFrame]:
    train = apply_adjudication(build_split(SRC / "training", nlp))
    test = build_split(SRC / "test", nlp)
    out = {CORPORA / "training" / "train.csv": train, CORPORA / "test" / "test.csv": test}
    if any((CORPORA / "demo" / "src").glob("*.txt")):
        manifest, speakers, gold = build_demo(demo_dir)
        out[CORPORA / "demo" / "manifest.csv"] = manifest
        out[CORPORA / "demo" / "speakers.csv"] = speakers
        out[CORPORA / "demo" / "gold.csv"] = gold
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed tables differ from a fresh build")
    args = ap.parse_args()
    import filecmp
    import tempfile

    nlp = load_pipeline("parser")
    final = CORPORA / "demo" / "transcripts"
    demo_dir = Path(tempfile.mkdtemp()) if args.check else final
    tables = build(nlp, demo_dir)
    stale = []
    if args.check:
        for f in sorted(demo_dir.iterdir()):
            if not (final / f.name).exists() or not filecmp.cmp(f, final / f.name, shallow=False):
                stale.append(f"corpora/demo/transcripts/{f.name}")
    for path, df in tables.items():
        if args.check:
            old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else None
            new = df.astype(str)
            if old is None or not old.equals(new.reset_index(drop=True)):
                stale.append(str(path.relative_to(ROOT)))
        else:
            write_table(df, path)
            print(f"{path.relative_to(ROOT)}: {len(df)} rows")
    if stale:
        print("out of date (run scripts/build_corpus.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
