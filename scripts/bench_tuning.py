#!/usr/bin/env python
"""The frozen pass of encoder tuning, before and after its two savings, measured in one run.

`discourse train` tunes the encoder's top layers; the layers below are frozen,
so their hidden states are computed once per text (``tune.TunedStates``). That
pass used to run every text through the whole encoder and keep the states at
the first tuned layer, and to run a one-sentence excerpt twice (as excerpt and
as its own sentence). Now it stops at the first tuned layer and runs each
distinct text once. This script times both ways on the same texts (all 2,346
training excerpts and their sentences by default, about 15 minutes; with
``--rounds`` above 1, alternating) and checks that they give the same states.

    python scripts/bench_tuning.py [--n N] [--rounds 1] [--json docs/bench_tuning.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discourse.coded import read_coded  # noqa: E402
from discourse.embed import Encoder  # noqa: E402
from discourse.model import config_from_manifest, read_model_manifest  # noqa: E402
from discourse.sentences import sentence_index  # noqa: E402
from discourse.tune import TunedStates, Tuner  # noqa: E402


def previous_states(tuner: Tuner, everything: list[str], batch_size: int = 16) -> list:
    """The earlier frozen pass: every excerpt and every sentence (``everything``), each through all layers."""
    import torch

    out: list = [None] * len(everything)
    order = np.argsort([len(t) for t in everything], kind="stable")
    with torch.no_grad():
        for s in range(0, len(everything), batch_size):
            idx = order[s:s + batch_size]
            enc = tuner.st.tokenizer([everything[i] for i in idx], padding=True, truncation=True,
                                     max_length=tuner.max_length, return_tensors="pt")
            hs = tuner.auto(**enc, output_hidden_states=True).hidden_states[tuner.first]
            for r, i in enumerate(idx):
                out[i] = hs[r, : int(enc["attention_mask"][r].sum())].clone()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=0, help="training excerpts to use (the first N; 0: all)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    config = config_from_manifest(read_model_manifest(ROOT / "models" / "default"))
    texts = read_coded(ROOT / "corpora" / "training" / "train.csv")["text"].tolist()[: args.n or None]
    encoder = Encoder("all-mpnet-base-v2", use_cache=False)
    tuner = Tuner(encoder.model, config.tuning())
    sentences, index = sentence_index(texts)
    times: dict[str, list[float]] = {"previous": [], "now": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        old = previous_states(tuner, texts + sentences)
        times["previous"].append(time.perf_counter() - t)
        t = time.perf_counter()
        new = TunedStates(tuner, texts, sentence_max=True)
        times["now"].append(time.perf_counter() - t)
    same_excerpts = max(float((a - b).abs().max()) for a, b in zip(old[: len(texts)], new.H))
    same_sentences = max(float((old[len(texts) + s] - new.states[k]).abs().max())
                         for ix, jx in zip(index, new.sentences_at) for s, k in zip(ix, jx))
    prev, now = float(np.median(times["previous"])), float(np.median(times["now"]))
    result = {
        "excerpts": len(texts), "sentences": len(sentences), "distinct_texts": len(new.states),
        "layers": len(tuner.auto.encoder.layer), "frozen_layers": tuner.first,
        "previous_s": round(prev, 2), "now_s": round(now, 2), "speedup": round(prev / now, 2),
        "max_abs_difference": max(same_excerpts, same_sentences), "rounds": args.rounds,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
