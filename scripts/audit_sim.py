#!/usr/bin/env python
"""Simulate the audit loop on the held-out test split, with a reviewer who answers with the gold codes.

(a) Errors caught against review budget: the share of the model's wrong
    excerpt-level decisions (predicted code set != gold set) that a queue of a
    given size contains, for the tool's selection (`discourse audit select`
    defaults, averaged over seeds), for a plain ranking by uncertainty, and for
    random selection (averaged over seeds). Saved as docs/audit-curve.png.
(b) One audit round: 100 test excerpts chosen by the tool (10% random share)
    are reviewed (gold codes), applied to a reviewed-codes store, folded into
    corpora/training/train.csv and the classifier is refitted with the shipped
    model's configuration and encoder (from its manifest; a tuned encoder is
    kept as it is); macro-F1 on the rest of the test split before (the same
    refit without the reviewed excerpts) and after, beside the shipped model's.
    The same round with 100 randomly chosen excerpts is the comparison.
(c) The rest of the test split is not the same set of excerpts after the two
    kinds of selection (uncertainty selection leaves the easy ones), so the
    value of the reviewed excerpts for retraining is also measured on documents
    held out from selection: review 100 excerpts from some test documents,
    score on the others (both ways round).

    python scripts/audit_sim.py [--png docs/audit-curve.png] [--seeds 5] [--random-seeds 20] [--no-retrain]

Prints the numbers as Markdown (docs/audit.md quotes them).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discourse.audit import select_for_review, wrong_probability  # noqa: E402
from discourse.review_file import read_review, write_queue  # noqa: E402
from discourse.review_store import apply_review, reviewed_as_coded  # noqa: E402
from discourse.coded import cv_groups, read_coded  # noqa: E402
from discourse.evaluate import agreement_table, to_matrix  # noqa: E402
from discourse.model import DiscourseClassifier  # noqa: E402

MODEL = ROOT / "models" / "default"
TEST = ROOT / "corpora" / "test" / "test.csv"
TRAIN = ROOT / "corpora" / "training" / "train.csv"


def test_predictions(model, test: pd.DataFrame) -> pd.DataFrame:
    """The test split as a predictions table (documents are its source files)."""
    P = model.predict_proba(test["text"].tolist())
    n = len(test)
    pred = pd.DataFrame({"excerpt_id": test["id"].astype(str), "doc_id": test["source"].astype(str),
                         "start": np.arange(n), "end": np.arange(n) + 1, "speaker": test["source"].astype(str),
                         "role": test["role"].astype(str), "trust": "", "text": test["text"]})
    for j, c in enumerate(model.codes):
        pred[f"p_{c}"] = P[:, j]
    pred["codes"] = [";".join(cs) for cs in model.codes_from_proba(P)]
    return pred


def caught_curve(pred, wrong, codes, thresholds, budgets, seeds, random_seeds) -> pd.DataFrame:
    """Share of wrong excerpts caught at each budget: tool selection, uncertainty ranking, random."""
    n_wrong = wrong.sum()
    P = pred[[f"p_{c}" for c in codes]].to_numpy()
    ranking = np.argsort(-wrong_probability(P, thresholds), kind="stable")
    ids = pred["excerpt_id"].to_numpy()
    rows = []
    for k in budgets:
        tool = []
        for s in range(seeds):
            q = select_for_review(pred, None, {}, codes, thresholds, k, seed=s)
            tool.append(wrong[np.isin(ids, q["excerpt_id"])].sum() / n_wrong)
        rnd = [wrong[np.random.default_rng(1000 + s).permutation(len(pred))[:k]].sum() / n_wrong
               for s in range(random_seeds)]
        rows.append({"budget": k, "share_reviewed": k / len(pred), "tool": np.mean(tool),
                     "ranking": wrong[ranking[:k]].sum() / n_wrong, "random": np.mean(rnd),
                     "random_sd": np.std(rnd)})
    return pd.DataFrame(rows)


def plot_curve(curve: pd.DataFrame, n: int, n_wrong: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = 100 * curve.share_reviewed
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    ax.plot(x, 100 * curve.ranking, color="#9ecae1", lw=1.5, label="ranking by uncertainty only")
    ax.plot(x, 100 * curve.tool, color="#1f5f8b", lw=2.2, label="audit select (10% random, spread)")
    ax.plot(x, 100 * curve.random, color="#d95f02", lw=1.8, ls="--", label="random selection (mean)")
    ax.fill_between(x, 100 * (curve.random - curve.random_sd), 100 * (curve.random + curve.random_sd),
                    color="#d95f02", alpha=0.12, lw=0)
    ax.axvline(20, color="#888", lw=0.8, ls=":")
    ax.axhline(50, color="#888", lw=0.8, ls=":")
    ax.set_xlabel("excerpts reviewed (% of the test split)")
    ax.set_ylabel("model errors caught (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.set_title(f"Errors caught by review budget\n(test split: {n} excerpts, {n_wrong} with a wrong code decision)",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def macro_f1(model, texts, code_sets) -> float:
    Y = to_matrix(code_sets, model.codes)
    P = model.predict_proba(texts)
    t = agreement_table(Y, P >= np.asarray(model.thresholds_), model.codes)
    return float(t.loc[t.code == "macro", "f1"].iloc[0])


def audit_round(model, pred, test, train, budget, random_share, seed, work: Path, today="2000-01-01"):
    """Select, review with gold codes (through the real queue file), apply, retrain; the retrained model."""
    codes = model.codes
    queue = select_for_review(pred, None, {}, codes, model.thresholds_, budget, random_share=random_share, seed=seed)
    gold = dict(zip(test["id"].astype(str), test["codes"]))
    for c in codes:
        queue[c] = ["yes" if c in gold[e] else "no" for e in queue["excerpt_id"]]
    queue["reviewer"] = "gold"
    path = work / f"queue-{random_share}-{seed}.csv"
    write_queue(queue, codes, path)
    reviewed = read_review(path, codes)
    store = work / f"reviewed-{random_share}-{seed}.parquet"
    apply_review(reviewed, store, {"model": "default", "model_sha256": "sim"}, today=today, codes=codes)
    extra = reviewed_as_coded(store, codes)
    extra = extra[~extra["text"].isin(set(train["text"]))]
    return set(queue["excerpt_id"]), refit(model, pd.concat([train, extra], ignore_index=True))


def refit(model, df: pd.DataFrame):
    """The model's classifier refitted on ``df`` with the model's own (tuned) encoder kept as it is.

    The baseline of a round is this refit on the training data alone: with a
    tuned encoder it differs from the shipped model, whose classifier was fitted
    on features from encoders tuned without each fold, while here the encoder
    has seen every training excerpt.
    """
    _, groups = cv_groups(df)
    new = DiscourseClassifier(model.codes, encoder=model.encoder, config=dataclasses.replace(model.config, tune_layers=0))
    new.fit(df["text"].tolist(), df["codes"].tolist(), groups=groups)
    return new


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--png", default=str(ROOT / "docs" / "audit-curve.png"))
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the tool's selection to average")
    ap.add_argument("--random-seeds", type=int, default=20, help="seeds of random selection to average")
    ap.add_argument("--round-seeds", type=int, default=3, help="seeds of each audit round")
    ap.add_argument("--round-size", type=int, nargs="+", default=[100], help="excerpts reviewed in a round")
    ap.add_argument("--no-retrain", action="store_true", help="only the curve")
    args = ap.parse_args(argv)

    t0 = time.time()
    model = DiscourseClassifier.load(MODEL)
    codes = model.codes
    test = read_coded(TEST, codes)
    pred = test_predictions(model, test)
    thresholds = np.asarray(model.thresholds_)
    Y = to_matrix(test["codes"].tolist(), codes).astype(bool)
    M = pred[[f"p_{c}" for c in codes]].to_numpy() >= thresholds
    wrong = (M != Y).any(axis=1)
    n, n_wrong = len(test), int(wrong.sum())
    print(f"test split: {n} excerpts, {n_wrong} with a wrong code decision ({(M != Y).sum()} wrong code decisions)\n")

    budgets = sorted({max(1, int(round(f * n))) for f in np.arange(0.01, 1.0001, 0.01)})
    curve = caught_curve(pred, wrong, codes, thresholds, budgets, args.seeds, args.random_seeds)
    plot_curve(curve, n, n_wrong, Path(args.png))
    print("| reviewed | budget | audit select | uncertainty ranking | random (mean of %d) |" % args.random_seeds)
    print("|---|---|---|---|---|")
    for f in (0.05, 0.10, 0.20, 0.30, 0.50):
        r = curve.iloc[(curve.share_reviewed - f).abs().argmin()]
        print(f"| {f:.0%} | {int(r.budget)} | {r.tool:.1%} | {r.ranking:.1%} | {r.random:.1%} |")
    print(f"\ncurve -> {args.png} ({time.time() - t0:.0f}s)")
    if args.no_retrain:
        return 0

    train = read_coded(TRAIN, codes)
    baseline = refit(model, train)  # the same refit without the reviewed excerpts: "before"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in args.round_size:
            for kind, share in (("audit select", 0.10), ("random", 1.0)):
                for seed in range(args.round_seeds):
                    chosen, new = audit_round(model, pred, test, train, size, share, seed, work)
                    rest = ~test["id"].astype(str).isin(chosen)
                    texts, sets = test.loc[rest, "text"].tolist(), test.loc[rest, "codes"].tolist()
                    rows.append({"size": size, "kind": kind, "seed": seed, "rest": int(rest.sum()),
                                 "wrong_in_queue": int(wrong[~rest.to_numpy()].sum()),
                                 "shipped": macro_f1(model, texts, sets), "before": macro_f1(baseline, texts, sets),
                                 "after": macro_f1(new, texts, sets)})
                    print(f"{size} {kind} seed {seed}: {time.time() - t0:.0f}s", file=sys.stderr)
    res = pd.DataFrame(rows)
    res["change"] = res["after"] - res["before"]
    print("\n| reviewed | selection | seed | model errors among them | rest of test split | shipped model "
          "| macro-F1 before | after | change |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res.itertuples():
        print(f"| {r.size} | {r.kind} | {r.seed} | {r.wrong_in_queue} | {r.rest} | {r.shipped:.3f} | {r.before:.3f} "
              f"| {r.after:.3f} | {r.change:+.3f} |")
    for (size, kind), g in res.groupby(["size", "kind"], sort=False):
        print(f"| {size} | {kind} | mean | {g.wrong_in_queue.mean():.1f} | {g.rest.iloc[0]} | {g.shipped.mean():.3f} "
              f"| {g.before.mean():.3f} | {g.after.mean():.3f} | {g.change.mean():+.3f} |")

    # (c) the rest of the test split is easier after uncertainty selection than after random selection, so
    # compare the two on documents that neither may choose from: review in some documents, score on the others
    docs = sorted(test["source"].unique())
    big = test["source"].value_counts().idxmax()
    folds = [[big], [d for d in docs if d != big]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for pool_docs in folds:
            in_pool = test["source"].isin(pool_docs).to_numpy()
            held = test[~in_pool]
            texts, sets = held["text"].tolist(), held["codes"].tolist()
            shipped, before = macro_f1(model, texts, sets), macro_f1(baseline, texts, sets)
            pool_pred = pred[in_pool].reset_index(drop=True)
            for kind, share in (("audit select", 0.10), ("random", 1.0)):
                for seed in range(args.round_seeds):
                    size = min(args.round_size[0], len(pool_pred))
                    chosen, new = audit_round(model, pool_pred, test, train, size, share, seed, work)
                    rows.append({"pool": f"{int(in_pool.sum())} excerpts of {len(pool_docs)} doc(s)",
                                 "held": len(held), "kind": kind, "seed": seed, "size": size,
                                 "wrong_in_queue": int(wrong[test["id"].astype(str).isin(chosen).to_numpy()].sum()),
                                 "shipped": shipped, "before": before, "after": macro_f1(new, texts, sets)})
                    print(f"held-out {len(held)} {kind} seed {seed}: {time.time() - t0:.0f}s", file=sys.stderr)
    res = pd.DataFrame(rows)
    res["change"] = res["after"] - res["before"]
    print("\n| reviewed from | scored on (other documents) | selection | model errors among the reviewed (mean) "
          "| shipped model | macro-F1 before | after (mean) | change (mean) |")
    print("|---|---|---|---|---|---|---|---|")
    for (pool, kind), g in res.groupby(["pool", "kind"], sort=False):
        print(f"| {g['size'].iloc[0]} of {pool} | {g.held.iloc[0]} | {kind} | {g.wrong_in_queue.mean():.1f} | "
              f"{g.shipped.iloc[0]:.3f} | {g.before.iloc[0]:.3f} | {g.after.mean():.3f} | {g.change.mean():+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
