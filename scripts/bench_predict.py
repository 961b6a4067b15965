#!/usr/bin/env python
"""Predict throughput on this machine, as a ratio to the bare encoder measured in the same run.

Times, on the same excerpts (the test split, repeated to N texts), with the
embedding cache off: (1) the bare sentence-transformers encoder; (2) the full
`predict_proba` of the shipped model (encode + features + classifiers +
calibration); (3) segmentation with each spaCy sentence method, in words/s.

    python scripts/bench_predict.py [--n 1000] [--model models/default]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discourse.embed import Encoder  # noqa: E402
from discourse.model import DiscourseClassifier  # noqa: E402
from discourse.segment import load_pipeline, segment, sentences_of_turns  # noqa: E402
from discourse.transcripts import read_transcript  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    test = pd.read_csv(ROOT / "corpora" / "test" / "test.csv", keep_default_na=False)
    texts = (test["text"].tolist() * (args.n // len(test) + 1))[: args.n]
    from discourse.model import read_model_manifest

    name = read_model_manifest(args.model)["encoder"]["name"]
    model = DiscourseClassifier.load(args.model, encoder=Encoder(name, use_cache=False))
    enc = model.encoder  # the bare encoder: the model's own (tuned, if it is) weights, no classifier
    enc.encode(texts[:16])  # load weights
    t0 = time.perf_counter()
    enc.encode(texts)
    bare = len(texts) / (time.perf_counter() - t0)
    model.predict_proba(texts[:16])
    t0 = time.perf_counter()
    model.predict_proba(texts)
    full = len(texts) / (time.perf_counter() - t0)
    results = {"encoder": name, "texts": len(texts), "encoder_excerpts_per_s": round(bare, 1), "predict_excerpts_per_s": round(full, 1),
               "predict_to_encoder_ratio": round(full / bare, 3)}
    demo = pd.read_csv(ROOT / "corpora" / "demo" / "manifest.csv", dtype=str)
    docs = [read_transcript(ROOT / "corpora" / "demo" / f, doc_id=d) for d, f in zip(demo.doc_id, demo.file)]
    turns = pd.concat([d.turns for d in docs], ignore_index=True)
    words = int(turns["text"].str.split().str.len().sum())
    bounds = {}
    for method in ("parser", "senter", "rule"):
        nlp = load_pipeline(method)
        segment(turns.head(20), nlp)
        t0 = time.perf_counter()
        ex = segment(turns, nlp)
        results[f"segment_{method}_words_per_s"] = round(words / (time.perf_counter() - t0))
        results[f"segment_{method}_excerpts"] = len(ex)
        spans = sentences_of_turns(turns["text"].tolist(), nlp)
        bounds[method] = {(i, e) for i, ss in enumerate(spans) for (_, e, _, _) in ss[:-1]}
    for method in ("senter", "rule"):  # sentence ends agreeing with the parser's (after tidying)
        both = len(bounds[method] & bounds["parser"])
        results[f"boundaries_{method}_vs_parser_precision"] = round(both / max(1, len(bounds[method])), 3)
        results[f"boundaries_{method}_vs_parser_recall"] = round(both / max(1, len(bounds["parser"])), 3)
    results["segment_words"] = words
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
