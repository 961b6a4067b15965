#!/usr/bin/env python
"""Score the pipeline against the demo study's designed answer (corpora/demo/gold.csv).

Classifies the demo corpus with a model (default: models/default), maps the
gold spans onto the excerpts the pipeline cut, and reports
  - excerpt-level agreement (macro-F1, per-code kappa) with the gold codes;
  - mean absolute error between recovered and gold prevalence per role and per trust;
  - whether every designed difference (corpora/demo/design.yaml) is recovered in the right direction.

    python scripts/validate_demo.py [--model DIR] [--out DIR] [--json FILE] [--adapt-priors]

Exit status 1 if the prevalence error exceeds 0.05 or a designed difference is reversed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from discourse.evaluate import agreement_table, to_matrix  # noqa: E402
from discourse.profiles import profile  # noqa: E402

DEMO = ROOT / "corpora" / "demo"
MAE_TARGET = 0.05


def gold_codes(pred: pd.DataFrame, gold: pd.DataFrame, codes: list[str]) -> list[list[str]]:
    """An excerpt carries a gold code when it overlaps a gold span by at least half of the shorter of the two."""
    out = []
    by_doc = {d: g for d, g in gold.groupby("doc_id")}
    for r in pred.itertuples():
        spans = by_doc.get(r.doc_id)
        got = set()
        if spans is not None:
            ov = np.minimum(spans["end"].to_numpy(), r.end) - np.maximum(spans["start"].to_numpy(), r.start)
            need = 0.5 * np.minimum(spans["end"].to_numpy() - spans["start"].to_numpy(), r.end - r.start)
            for cs in spans["codes"][ov >= need]:
                got.update(c for c in cs.split(";") if c)
        out.append(sorted(got & set(codes)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--out", default=str(ROOT / "out" / "validate"))
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--encoder-backend", default=None, help="torch or onnx-int8 (default: the CLI's)")
    ap.add_argument("--adapt-priors", action="store_true", help="classify with EM prior correction")
    args = ap.parse_args()
    out = Path(args.out)
    cli = [sys.executable, "-m", "discourse.cli", "classify", "--manifest", str(DEMO / "manifest.csv"),
           "--model", args.model, "-o", str(out)]
    if args.encoder_backend:
        cli += ["--encoder-backend", args.encoder_backend]
    if args.adapt_priors:
        cli.append("--adapt-priors")
    subprocess.run(cli, check=True)
    pred = pd.read_parquet(out / "predictions.parquet")
    pred = pred[pred["role"] != "interviewer"].reset_index(drop=True)
    codes = [c[2:] for c in pred.columns if c.startswith("p_")]
    gold = pd.read_csv(DEMO / "gold.csv", dtype={"doc_id": str, "codes": str}, keep_default_na=False)
    design = yaml.safe_load((DEMO / "design.yaml").read_text(encoding="utf-8"))

    G = gold_codes(pred, gold, codes)
    Y = to_matrix(G, codes)
    P = to_matrix([[c for c in s.split(";") if c] for s in pred["codes"].fillna("")], codes)
    table = agreement_table(Y, P, codes)
    gold_pred = pred.copy()
    for j, c in enumerate(codes):
        gold_pred[f"p_{c}"] = Y[:, j].astype(float)
    gold_pred["codes"] = [";".join(g) for g in G]

    results = {"excerpts": len(pred), "gold_uncoded_share": float(1 - Y.any(axis=1).mean()),
               "excerpt_macro_f1": float(table.loc[table.code == "macro", "f1"].iloc[0]),
               "excerpt_kappa": {r.code: round(float(r.kappa), 3) for r in table.itertuples() if r.code in codes},
               "groupings": {}}
    ok = True
    for by in ("role", "trust"):
        rec = profile(pred, codes, [by], reps=200, permutations=10)
        tru = profile(gold_pred, codes, [by], reps=200, permutations=10)
        m = rec.merge(tru, on=["group", "code"], suffixes=("", "_gold"))
        m["error"] = (m["prevalence"] - m["prevalence_gold"]).abs()
        mae = float(m["error"].mean())
        checks = []
        for code, hi, lo in design["differences"][by]:
            r = m.set_index(["group", "code"])
            got = r.loc[(hi, code), "prevalence"] - r.loc[(lo, code), "prevalence"]
            want = r.loc[(hi, code), "prevalence_gold"] - r.loc[(lo, code), "prevalence_gold"]
            checks.append({"code": code, "higher": hi, "lower": lo, "recovered_diff": round(float(got), 4),
                           "gold_diff": round(float(want), 4), "right_direction": bool(got > 0)})
        results["groupings"][by] = {
            "mae": round(mae, 4),
            "max_error": round(float(m["error"].max()), 4),
            "differences_recovered": sum(c["right_direction"] for c in checks),
            "differences": len(checks),
            "checks": checks,
            "table": m[["group", "code", "prevalence", "prevalence_gold", "error"]].round(4).to_dict("records"),
        }
        ok &= mae <= MAE_TARGET and all(c["right_direction"] for c in checks)
        print(f"{by:6s} prevalence MAE {mae:.3f} (max {m['error'].max():.3f}); "
              f"designed differences recovered {sum(c['right_direction'] for c in checks)}/{len(checks)}")
        for c in checks:
            if not c["right_direction"]:
                print(f"  reversed: {c['code']} {c['higher']} > {c['lower']} (recovered {c['recovered_diff']:+.3f}, gold {c['gold_diff']:+.3f})")
    print(f"excerpt-level macro-F1 against gold spans {results['excerpt_macro_f1']:.3f} over {len(pred)} excerpts; kappa {results['excerpt_kappa']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
