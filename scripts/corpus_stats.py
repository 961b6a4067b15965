#!/usr/bin/env python
"""Validate the corpus and print its counts against the targets of its datasheet.

Checks: every code is in the codebook; no duplicate or near-duplicate excerpt
within or across train and test; every gold span of the demo study lies inside
its document, on word boundaries, and matches its text. Exits 1 if a check or
a target fails.

    python scripts/corpus_stats.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discourse.codebook import load_codebook  # noqa: E402
from discourse.transcripts import read_transcript  # noqa: E402

NEAR_DUPLICATE = 0.85  # cosine of character 3-5-gram TF-IDF vectors


def code_lists(s: pd.Series) -> list[list[str]]:
    return [[c for c in v.split(";") if c] for v in s.fillna("")]


def near_duplicates(texts: list[str], ids: list[str]) -> list[tuple[str, str, float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    X = vec.fit_transform([" ".join(t.lower().split()) for t in texts])
    sim = (X @ X.T).tocoo()
    out = [(ids[i], ids[j], float(v)) for i, j, v in zip(sim.row, sim.col, sim.data) if i < j and v >= NEAR_DUPLICATE]
    return sorted(out)


def split_stats(df: pd.DataFrame, codes: list[str]) -> dict:
    labels = code_lists(df["codes"])
    n = len(df)
    coded = [l for l in labels if l]
    per_code = {c: sum(c in l for l in labels) for c in codes}
    words = df["text"].str.split().str.len()
    return {
        "excerpts": n,
        "uncoded_share": round(1 - len(coded) / n, 3) if n else 0.0,
        "multi_coded_share_of_coded": round(sum(len(l) > 1 for l in coded) / len(coded), 3) if coded else 0.0,
        "per_code": per_code,
        "batches": df["batch"].value_counts().sort_index().to_dict(),
        "coders": sorted(df["coder"].unique().tolist()),
        "registers": df["register"].value_counts().sort_index().to_dict(),
        "roles": int(df["role"].nunique()),
        "from_whole_transcripts_share": round(df["source"].str.contains("/").mean(), 3) if n else 0.0,
        "words_min_median_max": [int(words.min()), int(words.median()), int(words.max())] if n else [],
    }


def double_coding(train: pd.DataFrame, test: pd.DataFrame, codes: list[str]) -> dict:
    """Per-code agreement between first and blind second coders (training sample, test split, batches b08-b10)."""
    from discourse.evaluate import agreement_table, to_matrix

    dc = ROOT / "corpora" / "src" / "double_coding"
    out = {}
    first_train = dict(zip(train["id"], train["codes"]))
    adj = dc / "adjudicated.csv"
    if adj.exists():  # agreement is measured on the first coder's labels, before adjudication
        a = pd.read_csv(adj, dtype=str, keep_default_na=False)
        first_train.update(dict(zip(a["id"], a["first_coder"])))
    for name, second_file, first in (("training sample", "second_coder.csv", first_train),
                                     ("test split", "test_second_coder.csv", dict(zip(test["id"], test["codes"]))),
                                     ("batches b08-b10", "new_batches_second_coder.csv", first_train)):
        path = dc / second_file
        if not path.exists():
            continue
        sec = pd.read_csv(path, dtype=str, keep_default_na=False)
        A = to_matrix(code_lists(sec["id"].map(first)), codes)
        B = to_matrix(code_lists(sec["codes"]), codes)
        t = agreement_table(A, B, codes).set_index("code")
        out[name] = {"n": len(sec), "kappa": {c: round(float(t.loc[c, "kappa"]), 3) for c in codes},
                     "alpha": {c: round(float(t.loc[c, "alpha"]), 3) for c in codes},
                     "mean_kappa": round(float(t.loc["macro", "kappa"]), 3),
                     "disagreeing_excerpts": int((A != B).any(axis=1).sum())}
    return out


def demo_stats(demo: Path) -> tuple[dict, list[str]]:
    problems = []
    manifest = pd.read_csv(demo / "manifest.csv", dtype=str, keep_default_na=False)
    speakers = pd.read_csv(demo / "speakers.csv", dtype=str, keep_default_na=False)
    gold = pd.read_csv(demo / "gold.csv", dtype={"doc_id": str, "codes": str, "text": str}, keep_default_na=False)
    words, texts = {}, {}
    for row in manifest.itertuples():
        known = set(speakers.loc[speakers.doc_id == row.doc_id, "speaker"])
        t = read_transcript(demo / row.file, doc_id=row.doc_id, known_speakers=known)
        texts[row.doc_id] = t.text
        words[row.doc_id] = int(t.turns.text.str.split().str.len().sum())
    for g in gold.itertuples():
        text = texts.get(g.doc_id)
        if text is None:
            problems.append(f"gold.csv: unknown doc_id {g.doc_id}")
            continue
        if not (0 <= g.start < g.end <= len(text)):
            problems.append(f"gold.csv: {g.doc_id} span {g.start}-{g.end} is outside the document")
            continue
        if (g.start > 0 and text[g.start - 1].isalnum()) or (g.end < len(text) and text[g.end].isalnum()):
            problems.append(f"gold.csv: {g.doc_id} span {g.start}-{g.end} is not on word boundaries")
        if text[g.start:g.end] != g.text:
            problems.append(f"gold.csv: {g.doc_id} span {g.start}-{g.end} does not match its text")
    roles = speakers[speakers.role != "interviewer"].merge(manifest[["doc_id", "trust"]], on="doc_id")
    interviews = manifest[~manifest.doc_id.str.endswith("FG")]
    stats = {
        "documents": len(manifest),
        "formats": manifest["format"].value_counts().sort_index().to_dict(),
        "trusts": manifest["trust"].value_counts().sort_index().to_dict(),
        "respondent_roles": roles.drop_duplicates("doc_id")["role"].value_counts().sort_index().to_dict(),
        "interview_words_min_max": [min(words[d] for d in interviews.doc_id), max(words[d] for d in interviews.doc_id)] if len(interviews) else [],
        "gold_spans": len(gold),
        "gold_spans_per_code": {c: int(n) for c, n in pd.Series(";".join(gold.codes).split(";")).value_counts().sort_index().items()},
    }
    for d in interviews.doc_id:
        if not 1200 <= words[d] <= 2500:
            problems.append(f"demo {d}: {words[d]} words, outside 1,200-2,500")
    return stats, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the statistics as JSON to this file")
    args = ap.parse_args()
    codebook = load_codebook(ROOT / "corpora" / "codebook.yaml")
    codes = codebook.ids
    train = pd.read_csv(ROOT / "corpora" / "training" / "train.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(ROOT / "corpora" / "test" / "test.csv", dtype=str, keep_default_na=False)
    problems = []
    for name, df in (("train", train), ("test", test)):
        unknown = sorted({c for l in code_lists(df["codes"]) for c in l} - set(codes))
        if unknown:
            problems.append(f"{name}: codes not in the codebook: {', '.join(unknown)}")
        if df["id"].duplicated().any():
            problems.append(f"{name}: duplicate ids {df['id'][df['id'].duplicated()].tolist()[:5]}")
    both = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    dups = near_duplicates(both["text"].tolist(), both["id"].tolist())
    for a, b, v in dups:
        problems.append(f"near-duplicate excerpts {a} and {b} (similarity {v:.2f})")
    stats = {"train": split_stats(train, codes), "test": split_stats(test, codes),
             "double_coding": double_coding(train, test, codes)}
    demo = ROOT / "corpora" / "demo"
    if (demo / "manifest.csv").exists():
        stats["demo"], more = demo_stats(demo)
        problems += more
    tr = stats["train"]
    targets = {
        "train: at least 1,500 excerpts": tr["excerpts"] >= 1500,
        "train: every code at least 130 positives": min(tr["per_code"].values()) >= 130,
        "train: at least 45% uncoded": tr["uncoded_share"] >= 0.45,
        "train: at least 20% of coded excerpts multi-coded": tr["multi_coded_share_of_coded"] >= 0.20,
        "train: at least a third from whole transcripts": tr["from_whole_transcripts_share"] >= 1 / 3,
        "train+test: at least 5 batches by different coders": len(set(train.batch) | set(test.batch)) >= 5
        and len(set(train.coder) | set(test.coder)) >= 5,
        "test: at least 250 excerpts": stats["test"]["excerpts"] >= 250,
        "test: batches not used in training": not (set(train.batch) & set(test.batch)),
    }
    if "demo" in stats:
        targets["demo: 27 documents (24 interviews, 3 focus groups)"] = stats["demo"]["documents"] == 27
    targets = {k: bool(v) for k, v in targets.items()}
    print(json.dumps(stats, indent=2))
    print()
    for name, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    for p in problems:
        print(f"PROBLEM  {p}")
    if args.json:
        Path(args.json).write_text(json.dumps({"stats": stats, "targets": targets, "problems": problems}, indent=2) + "\n")
    return 0 if all(targets.values()) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
