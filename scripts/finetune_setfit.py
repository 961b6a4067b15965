#!/usr/bin/env python
"""SetFit-style contrastive fine-tuning of all-MiniLM-L6-v2 on the training split (a model-selection candidate).

Pairs of training excerpts are labelled with the Jaccard similarity of their
code sets (1 for identical sets, uncoded with uncoded included); the encoder is
tuned for one epoch with a cosine-similarity loss on CPU, then saved as a
sentence-transformers folder that `scripts/model_selection.py --setfit DIR`
evaluates. Needs `datasets` (pip install datasets) besides the project's packages.

    python scripts/finetune_setfit.py -o /tmp/setfit-minilm [--pairs-per-excerpt 2]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--pairs-per-excerpt", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from sentence_transformers import InputExample, SentenceTransformer, losses
    from torch.utils.data import DataLoader

    from discourse.coded import read_coded
    from discourse.encoders import resolve_encoder

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train = read_coded(ROOT / "corpora" / "training" / "train.csv")
    texts, sets = train["text"].tolist(), [frozenset(c) for c in train["codes"]]
    by_code: dict[str, list[int]] = {}
    for i, s in enumerate(sets):
        for c in s:
            by_code.setdefault(c, []).append(i)

    def sim(a, b):
        if a == b:
            return 1.0
        return len(a & b) / len(a | b) if a and b else 0.0

    pairs = []
    for i, s in enumerate(sets):
        for k in range(args.pairs_per_excerpt):
            if k == 0 and s:  # one partner sharing a code, the rest random
                j = rng.choice(by_code[rng.choice(sorted(s))])
            else:
                j = rng.randrange(len(sets))
            pairs.append(InputExample(texts=[texts[i], texts[j]], label=sim(s, sets[j])))
    _, path = resolve_encoder(None)
    model = SentenceTransformer(str(path), device="cpu")
    model.max_seq_length = args.max_seq_length
    loader = DataLoader(pairs, shuffle=True, batch_size=args.batch_size, generator=torch.Generator().manual_seed(args.seed))
    t0 = time.perf_counter()
    model.fit(train_objectives=[(loader, losses.CosineSimilarityLoss(model))], epochs=1, warmup_steps=10,
              show_progress_bar=False)
    print(f"{len(pairs)} pairs, {len(loader)} steps, {time.perf_counter() - t0:.0f} s")
    model.save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
