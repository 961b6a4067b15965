#!/usr/bin/env python
"""Compare classifier designs under one grouped cross-validation and on the held-out test split.

Every candidate is trained with the same 5-fold cross-validation grouped by
batch (each fold holds out whole batches written by one coder), and then
trained on all of corpora/training and scored on corpora/test, which no
candidate saw. Writes docs/model-selection.md and docs/model-selection.json.

    python scripts/model_selection.py [--setfit DIR]

all-mpnet-base-v2 comes from its PyPI data packages (requirements-models.txt).
--setfit: a MiniLM folder fine-tuned contrastively on the training split (scripts/finetune_setfit.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discourse.codebook import load_codebook  # noqa: E402
from discourse.coded import read_coded  # noqa: E402
from discourse.embed import Encoder  # noqa: E402
from discourse.evaluate import agreement_table, expected_calibration_error, to_matrix  # noqa: E402
from discourse.model import DiscourseClassifier, ModelConfig, adapt_priors, config_from_manifest, read_model_manifest  # noqa: E402
from discourse.reporting import markdown_table  # noqa: E402

TUNED = "mpnet+tfidf (w=2, C=4), tuned"
SHIPPED = "mpnet+tfidf (w=2, C=4), tuned, sentence max"


def candidates(args) -> list[tuple[str, str | None, ModelConfig]]:
    frozen = dict(tune_layers=0, sentence_max=False)
    c = [
        ("tfidf", None, ModelConfig(features="tfidf", C=8)),
        ("minilm", "default", ModelConfig(features="embedding", C=4, **frozen)),
        ("minilm+tfidf (w=1, C=4)", "default", ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=1, **frozen)),
        ("minilm+tfidf (w=2, C=4)", "default", ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, **frozen)),
        ("minilm+tfidf (w=3, C=8)", "default", ModelConfig(features="embedding+tfidf", C=8, tfidf_weight=3, **frozen)),
        ("minilm+tfidf (w=2, C=4, uncoded x2)", "default", ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, uncoded_weight=2.0, **frozen)),
    ]
    c += [("mpnet", "all-mpnet-base-v2", ModelConfig(features="embedding", C=4, **frozen)),
          ("mpnet+tfidf (w=1, C=4)", "all-mpnet-base-v2", ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=1, **frozen)),
          ("mpnet+tfidf (w=2, C=4)", "all-mpnet-base-v2", ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, **frozen)),
          ("mpnet+tfidf (w=2, C=4), sentence max", "all-mpnet-base-v2",
           ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, tune_layers=0, sentence_max=True)),
          ("mpnet+tfidf (w=2, C=4), tuned, LoRA r=8", "all-mpnet-base-v2",
           ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, tune_layers=4, tune_rank=8, sentence_max=False)),
          (TUNED, "all-mpnet-base-v2", ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, tune_layers=4, sentence_max=False)),
          (SHIPPED, "all-mpnet-base-v2", ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, tune_layers=4, sentence_max=True))]
    if args.setfit:
        c += [("setfit-minilm", args.setfit, ModelConfig(features="embedding", C=4, **frozen)),
              ("setfit-minilm+tfidf (w=2, C=4)", args.setfit, ModelConfig(features="embedding+tfidf", C=4, tfidf_weight=2, **frozen))]
    return c


def sentence_max_effect(res: pd.DataFrame) -> str:
    """What the sentence-max features did to the frozen mpnet model in this run (and on the earlier corpus)."""
    rows = res.set_index("method")
    a, b = "mpnet+tfidf (w=2, C=4)", "mpnet+tfidf (w=2, C=4), sentence max"
    if a not in rows.index or b not in rows.index:
        return ""
    tuned_part = (" With the tuned encoder its part was not measured apart in this run (another hour of tuning)."
                  if TUNED not in rows.index or SHIPPED not in rows.index else
                  f" With the tuned encoder: {rows.loc[TUNED, 'cv macro-F1']:.3f} to {rows.loc[SHIPPED, 'cv macro-F1']:.3f} "
                  f"cross-validated, {rows.loc[TUNED, 'test macro-F1']:.3f} to {rows.loc[SHIPPED, 'test macro-F1']:.3f} on the test split.")
    return (f"With the frozen encoder it moved cross-validated macro-F1 from {rows.loc[a, 'cv macro-F1']:.3f} to "
            f"{rows.loc[b, 'cv macro-F1']:.3f} and the test split's from {rows.loc[a, 'test macro-F1']:.3f} to "
            f"{rows.loc[b, 'test macro-F1']:.3f}; on the earlier 1,961-excerpt corpus, from 0.826 to 0.837 and from "
            "0.877 to 0.897. A small gain where it counts (cross-validation across coders), at half the predict speed: "
            "`discourse train --no-sentence-max` gives the faster model." + tuned_part)


def precision_vs_uncoded(model, P_test: np.ndarray, Y: np.ndarray, shares=(0.45, 0.60, 0.75), reps: int = 30) -> pd.DataFrame:
    """Per-code precision when the test data's uncoded share is raised by subsampling coded excerpts."""
    rng = np.random.default_rng(0)
    unc = np.where(~Y.any(axis=1))[0]
    cod = np.where(Y.any(axis=1))[0]
    prior = np.array([model.info_["train_prior"][c] for c in model.codes])
    thr = np.asarray(model.thresholds_)
    rows = []
    for share in shares:
        n_cod = int(round(len(unc) * (1 - share) / share))
        n_unc = len(unc)
        if n_cod > len(cod):  # keep all coded, subsample uncoded
            n_cod, n_unc = len(cod), int(round(len(cod) * share / (1 - share)))
        for adapt in (False, True):
            prec = []
            for _ in range(reps):
                idx = np.concatenate([rng.choice(unc, n_unc, replace=False), rng.choice(cod, n_cod, replace=False)])
                P = P_test[idx]
                if adapt:
                    P, _ = adapt_priors(P, prior)
                t = agreement_table(Y[idx], P >= thr, model.codes)
                prec.append(t.set_index("code")["precision"])
            mean = pd.concat(prec, axis=1).mean(axis=1)
            rows.append({"uncoded share": share, "EM prior correction": "yes" if adapt else "no",
                         **{c: mean[c] for c in model.codes}, "macro": mean["macro"]})
    return pd.DataFrame(rows)


def training_sha(train: pd.DataFrame) -> str:
    from discourse.model import _hash_texts

    return _hash_texts(train["text"].tolist(), train["codes"].tolist())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setfit", default=None)
    ap.add_argument("--reuse", nargs=2, action="append", default=[], metavar=("MODEL_DIR", "TRAIN_SECONDS"),
                    help="take a tuned candidate from this model, trained on corpora/training with the same "
                         "settings, instead of tuning again (half an hour each); TRAIN_SECONDS is its training's wall time")
    ap.add_argument("--reused-tuning-only", action="store_true",
                    help="skip tuned candidates not given with --reuse (each tunes for most of an hour) and say so in the report")
    ap.add_argument("--out", default=str(ROOT / "docs" / "model-selection.md"))
    args = ap.parse_args()
    book = load_codebook(ROOT / "corpora" / "codebook.yaml")
    codes = book.ids
    train = read_coded(ROOT / "corpora" / "training" / "train.csv", codes)
    test = read_coded(ROOT / "corpora" / "test" / "test.csv", codes)
    Y = to_matrix(test["codes"].tolist(), codes)
    encoders: dict[str, Encoder] = {}
    results, per_code, robustness, skipped = [], [], None, []
    for name, enc_name, config in candidates(args):
        reuse = [(d, float(sec)) for d, sec in args.reuse if config_from_manifest(read_model_manifest(d)) == config]
        if config.tune_layers and not reuse and args.reused_tuning_only:
            skipped.append(name)
            continue
        enc = None
        if enc_name:
            enc = encoders.setdefault(enc_name, Encoder(None if enc_name == "default" else enc_name, backend="torch"))
            enc.encode(train["text"].tolist() + test["text"].tolist())  # warm the cache: timing below is the model's
        t0 = time.perf_counter()
        if config.tune_layers and reuse:
            model = DiscourseClassifier.load(reuse[0][0], encoder=enc)
            if model.info_["training_data_sha256"] != training_sha(train):
                raise SystemExit(f"{reuse[0][0]} was not trained on corpora/training")
            train_s = reuse[0][1]
        else:
            model = DiscourseClassifier(codes, encoder=enc, config=config)
            model.fit(train["text"].tolist(), train["codes"].tolist(), groups=train["batch"].tolist())
            train_s = time.perf_counter() - t0
        P = model.predict_proba(test["text"].tolist())
        table = agreement_table(Y, P >= np.asarray(model.thresholds_), codes)
        # predict speed from raw text, encoder cache off
        cold = Encoder(None if enc_name in (None, "default") else enc_name, backend="torch", use_cache=False,
                       adapter=model.adapter_) if enc_name else None
        speed_model = DiscourseClassifier(codes, encoder=cold, config=config)
        speed_model.vectorizer_, speed_model.estimators_ = model.vectorizer_, model.estimators_
        speed_model.platt_, speed_model.thresholds_ = model.platt_, model.thresholds_
        texts = test["text"].tolist()
        if cold is not None:
            cold.encode(texts[:8])  # load weights before timing
        t0 = time.perf_counter()
        speed_model.predict_proba(texts)
        speed = len(texts) / (time.perf_counter() - t0)
        leaky = enc_name is not None and enc_name == args.setfit  # encoder tuned on every fold: CV not honest
        row = {"method": name, "cv macro-F1": np.nan if leaky else model.cv_["macro_f1"],
               "cv ECE": np.nan if leaky else model.cv_["ece"],
               "test macro-F1": float(table.loc[table.code == "macro", "f1"].iloc[0]),
               "test min kappa": float(table.loc[table.code.isin(codes), "kappa"].min()),
               "test ECE": expected_calibration_error(Y, P), "train s": train_s, "predict excerpts/s": speed}
        results.append(row)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        for r in table.itertuples():
            if r.code in codes:
                per_code.append({"method": name, "code": r.code, "F1": r.f1, "kappa": r.kappa})
        if name == SHIPPED:
            robustness = precision_vs_uncoded(model, P, Y)
            stored_mb = len(model.adapter_.to_bytes()) / 2**20 if model.adapter_ is not None else 0.0
    res = pd.DataFrame(results)
    pc = pd.DataFrame(per_code)
    f1 = pc.pivot(index="method", columns="code", values="F1")[codes].reindex(res["method"]).reset_index()
    kap = pc.pivot(index="method", columns="code", values="kappa")[codes].reindex(res["method"]).reset_index()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = [
        "# Model selection\n",
        "Generated by `scripts/model_selection.py` (numbers below are from one run on this machine: 2 CPU cores).\n",
        f"Training data: `corpora/training/train.csv` ({len(train)} excerpts, {train['batch'].nunique()} batches by "
        f"{train['coder'].nunique()} coders). "
        "Cross-validation: 5 folds grouped by batch, so every fold is scored on coders and scenarios it did not train on. "
        f"Test: `corpora/test/test.csv` ({len(test)} excerpts by another coder in scenarios used nowhere else), never used for training or tuning. "
        "Thresholds are chosen per code on out-of-fold probabilities; probabilities are Platt-scaled on the same. "
        "Predict speed is from raw text with the embedding cache off, single process, measured while other work ran on the machine; "
        "the ratio to the bare encoder in one quiet run is in `docs/benchmarks.md`. "
        "The tuned row tunes the encoder inside each fold, so its cross-validated numbers are honest. "
        "SetFit rows have no cross-validated numbers: their encoder was fine-tuned on all five training batches, so "
        "every fold would have seen its held-out batch (fine-tuning inside each fold costs six CPU fine-tunes); "
        "their test numbers are honest.\n",
        "## Summary\n", markdown_table(res),
        "\n## Per-code F1 on the test split\n", markdown_table(f1),
        "\n## Per-code Cohen's kappa on the test split\n", markdown_table(kap),
    ]
    best = res.dropna(subset=["cv macro-F1"]).sort_values("cv macro-F1", ascending=False).iloc[0]
    md += ["\n## Decision\n",
           f"Shipped: **{SHIPPED}**. The best cross-validated macro-F1 is **{best['method']}** ({best['cv macro-F1']:.3f}); "
           "the grouped cross-validation across batches written by different coders is our best proxy for how a method "
           "will do on real interview speech it has not seen, so it decides, and the test split only confirms. "
           "Embeddings alone miss framings that turn on a few words; TF-IDF alone learns each coder's phrasing; side by side, "
           "with the n-gram block weighted up, they beat either. all-mpnet-base-v2 represents framings better than "
           "all-MiniLM-L6-v2 (embeddings alone: see the `mpnet` and `minilm` rows) at about a quarter of the speed. "
           "Tuning the encoder on the coded excerpts (`tuned` rows: the top 4 of mpnet's 12 layers trained 3 epochs "
           "with a multi-label head, inside every fold as well; `discourse/tune.py`) is the largest single gain we "
           "measured: the framings the codes turn on are learned into the representation, not only weighed by the "
           "classifier. Low-rank adapters on the same layers (`LoRA r=8`, measured on the earlier corpus: below) did not beat the frozen encoder in "
           "cross-validation, so the full weights are tuned; each weight matrix's change is then stored at rank 64 "
           f"(truncated SVD, float16: {stored_mb:.1f} MiB instead of 57 MB of whole matrices), inside every fold too, "
           "so the stored encoder is the evaluated one (truncating an earlier tuned model's whole-matrix changes to rank 64 left every test-split "
           "decision unchanged). Tuning costs training time (the train s column), not predict speed: the tuned "
           "encoder is the same network with changed weights. `discourse train --tune-layers 0` trains the frozen "
           "`mpnet+tfidf (w=2, C=4)` model in about a minute. "
           "The `sentence max` rows add, beside the excerpt's embedding, the elementwise maximum of its sentences' "
           "embeddings, each sentence embedded on its own (`discourse/sentences.py`): an excerpt often carries a second "
           "framing in one sentence (a budget framed as buying, and in its last sentence as control passing to the "
           "person), and the whole-excerpt embedding is dominated by the main one. It costs predict speed and some "
           "training time (the encoder embeds every sentence as well as the excerpt). "
           f"{sentence_max_effect(res)} "
           "SetFit-style contrastive fine-tuning of MiniLM (scripts/finetune_setfit.py: one epoch, 3,358 pairs from the 1,679 excerpts of batches b01-b05, 29 CPU minutes) "
           "did not beat the frozen encoder with the same features on the test split. Weighting uncoded excerpts double "
           "(training on more realistic priors) lowered test kappa. `discourse train --encoder all-MiniLM-L6-v2` gives the "
           "faster model for large batches. Robustness to the share of uncoded talk is in the last table: as the test "
           "data's uncoded share rises from 45% to 75%, precision falls unless the probabilities are adjusted to the "
           "corpus (EM prior correction, `discourse classify --adapt-priors`), which holds it up; we recommend "
           "`--adapt-priors` for corpora that are mostly uncoded talk. "
           "Why `empowered` stays the weakest code under every design, and which classifier settings did not help it, is in `docs/empowered.md` (`scripts/empowered_study.py`, training split only).\n"]
    if skipped:
        earlier = {"mpnet+tfidf (w=2, C=4), tuned, LoRA r=8": 0.826, TUNED: 0.850}
        md += ["\nNot re-run for this table (`--reused-tuning-only`; each tunes the encoder for most of an hour): "
               + ", ".join(f"`{n}`" for n in skipped) + ". On the earlier 1,961-excerpt corpus (batches b01-b07, "
               "`docs/model-selection.md` at commit ef2de02) the cross-validated macro-F1 was "
               + ", ".join(f"{earlier[n]:.3f} (`{n}`)" for n in skipped if n in earlier)
               + ", against 0.826 for the frozen `mpnet+tfidf (w=2, C=4)`, which scored 0.877 on the test "
               "split there. Batches b08-b10, written for the codes the classifier learned worst (corpora/README.md), "
               "are what lifted the frozen model's test score to the one above.\n"]
    if robustness is not None:
        md += [f"\n## Precision per code as the share of uncoded talk grows ({SHIPPED})\n",
               "Test excerpts resampled (30 draws each) to the given uncoded share; thresholds as trained. "
               "With EM prior correction the probabilities are first adjusted to the resampled corpus's own prevalence "
               "(Saerens, Latinne and Decaestecker 2002), as `discourse classify --adapt-priors` does.\n",
               markdown_table(robustness)]
    out.write_text("\n".join(md), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"summary": results, "per_code": per_code,
                                                    "robustness": None if robustness is None else robustness.to_dict("records")}, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
