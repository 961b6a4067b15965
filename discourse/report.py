"""The HTML report: one self-contained file (inline SVG figures, inline CSS, no CDN)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import figures
from .errors import DiscourseError
from .model import read_model_manifest
from .pipeline import check_same_model, read_run
from .profiles import profiles
from .tables import write_text

LOW_CONFIDENCE = 0.7  # an excerpt is low-confidence when its decision confidence is below this
TOP_EXCERPTS = 3
EVIDENCE_CAP = 150


def _labels(manifest: dict, codes: list[str]) -> dict[str, str]:
    book = manifest.get("codebook") or {}
    return {c["id"]: c.get("label", c["id"]) for c in book.get("codes", [])} or {c: c for c in codes}


def _fmt_ci(r) -> str:
    if pd.isna(r.ci_low):
        return "none: one speaker"
    return f"{r.ci_low:.1%}–{r.ci_high:.1%}"


def _p(v) -> str:
    if pd.isna(v):
        return ""
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _profile_rows(prof: pd.DataFrame, codes: list[str]) -> list[dict]:
    rows = []
    for g, sub in prof.groupby("group", sort=True):
        sub = sub.set_index("code")
        first = sub.iloc[0]
        rows.append({
            "group": g, "n_documents": int(first.n_documents), "n_speakers": int(first.n_speakers),
            "n_excerpts": int(first.n_excerpts),
            "cells": [{"p": f"{sub.loc[c].prevalence:.1%}", "ci": _fmt_ci(sub.loc[c]), "using": f"{int(sub.loc[c].speakers_using)} of {int(first.n_speakers)}",
                       "assigned": int(sub.loc[c].n_assigned)} for c in codes],
        })
    return rows


def _tests(prof: pd.DataFrame, codes: list[str]) -> list[dict]:
    return [{"code": c, "p": _p(prof.loc[prof.code == c, "p_value"].iloc[0])} for c in codes]


def _evidence(pred: pd.DataFrame, codes: list[str], redact) -> list[dict]:
    out = []
    for c in codes:
        col = f"p_{c}"
        has = pred[pred["codes"].str.split(";").map(lambda cs, c=c: c in cs)]
        roles = []
        for role, sub in has.groupby("role", sort=True):
            sub = sub.sort_values([col, "excerpt_id"], ascending=[False, True])
            top = [{"text": redact(r.text), "speaker": r.speaker, "doc_id": r.doc_id, "start": int(r.start),
                    "end": int(r.end), "p": f"{getattr(r, col):.2f}", "id": r.excerpt_id}
                   for r in sub.head(TOP_EXCERPTS).itertuples()]
            all_rows = [{"id": r.excerpt_id, "doc_id": r.doc_id, "start": int(r.start), "end": int(r.end),
                         "speaker": r.speaker, "p": f"{getattr(r, col):.2f}"}
                        for r in sub.sort_values(["doc_id", "start"]).head(EVIDENCE_CAP).itertuples()]
            roles.append({"role": role, "n": len(sub), "top": top, "all": all_rows, "capped": len(sub) > EVIDENCE_CAP})
        out.append({"code": c, "n": len(has), "roles": roles})
    return out


def _model_card(model_dir: Path, manifest: dict) -> dict:
    cv = manifest.get("cross_validation", {})
    curves = {}
    if cv.get("reliability"):
        curves["cross-validated (training)"] = pd.DataFrame(cv["reliability"]).astype(float)
    test = None
    ev = model_dir / "evaluation" / "evaluation.csv"
    if ev.exists():
        t = pd.read_csv(ev)
        test = {"rows": t.to_dict("records")}
    curve_file = model_dir / "evaluation" / "reliability.csv"
    if curve_file.exists():
        curves["held-out test split"] = pd.read_csv(curve_file)
    td = manifest.get("training_data", {})
    enc = manifest.get("encoder") or {}
    return {
        "name": model_dir.name,
        "n_train": manifest.get("n_train"),
        "training_file": td.get("file"),
        "reviewed_rows": td.get("reviewed_rows", 0),
        "grouped_by": td.get("cv_grouped_by") or cv.get("grouped_by"),
        "encoder": enc.get("name", "none"),
        "tuned_layers": (enc.get("adapter") or {}).get("layers"),
        "features": manifest.get("config", {}).get("features"),
        "cv_macro_f1": cv.get("macro_f1"),
        "cv_ece": cv.get("ece"),
        "cv_nested": cv.get("nested"),  # thresholds chosen on the other folds (models trained before it: absent)
        "cv_folds": cv.get("folds"),
        "per_code": cv.get("per_code", {}),
        "thresholds": manifest.get("thresholds", {}),
        "test": test,
        "test_summary": json.loads((model_dir / "evaluation" / "summary.json").read_text(encoding="utf-8"))
        if (model_dir / "evaluation" / "summary.json").exists() else None,
        "calibration_svg": figures.reliability(curves) if curves else "",
        "codebook": (manifest.get("codebook") or {}).get("name"),
        "codebook_sha": (manifest.get("codebook_sha256") or "")[:12],
        "created": manifest.get("created"),
    }


def build_report(outdir: Path, model_dir: Path, path: Path, redact: bool = False) -> Path:
    """Render ``OUTDIR/report.html`` (or ``path``) from a classify folder and its model."""
    import jinja2

    pred_path = outdir / "predictions.parquet"
    if not pred_path.exists():
        raise DiscourseError("no predictions.parquet here: run `discourse classify` into this folder first", outdir)
    pred = pd.read_parquet(pred_path)
    run = read_run(outdir)
    manifest = read_model_manifest(model_dir)
    check_same_model(run, model_dir, outdir)
    codes = [c[2:] for c in pred.columns if c.startswith("p_")]
    labels = _labels(manifest, codes)
    pred = pred[pred["role"] != "interviewer"].copy()
    pred["codes"] = pred["codes"].fillna("")
    tables = profiles(pred, codes, [["role"], ["trust"]])
    by_role, by_trust = tables["role"], tables["trust"]
    redactor = None
    if redact:
        from .redact import Redactor, pseudonyms

        table = pd.read_parquet(outdir / "turns.parquet", columns=["doc_id", "speaker"]) \
            if (outdir / "turns.parquet").exists() else pred[["doc_id", "speaker"]]
        redactor = Redactor(names=table["speaker"].unique())
        shown = pseudonyms(table)  # after the profiles: they resample the speakers as labelled
        pred = pred.assign(speaker=[shown.get((str(d), str(s)), s) for d, s in zip(pred["doc_id"], pred["speaker"])])
    red = redactor or (lambda t: t)
    low = pred[pred["confidence"] < LOW_CONFIDENCE]
    least = low.sort_values(["confidence", "excerpt_id"]).head(10)
    card = _model_card(model_dir, manifest)
    counts = {
        "documents": int(pred["doc_id"].nunique()),
        "speakers": int((pred["doc_id"] + "/" + pred["speaker"]).nunique()),
        "excerpts": int(len(pred)),
        "trusts": int(pred["trust"].nunique()) if "trust" in pred else 0,
        "roles": int(pred["role"].nunique()),
        "coded": int((pred["codes"] != "").sum()),
        "low": int(len(low)),
        "skipped": len(run.get("skipped", [])),
    }
    prevalence_overall = {c: float(pred[f"p_{c}"].mean()) for c in codes}
    env = jinja2.Environment(loader=jinja2.PackageLoader("discourse", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(
        codes=codes, labels=labels, counts=counts, run=run, card=card,
        prevalence_overall=prevalence_overall,
        heatmap_svg=figures.heatmap(by_role, codes, labels),
        role_bars_svg=figures.prevalence_bars(by_role, codes, labels),
        trust_bars_svg=figures.prevalence_bars(by_trust, codes, labels),
        role_rows=_profile_rows(by_role, codes), trust_rows=_profile_rows(by_trust, codes),
        role_tests=_tests(by_role, codes), trust_tests=_tests(by_trust, codes),
        evidence=_evidence(pred, codes, red),
        least=[{"text": red(r.text), "speaker": r.speaker, "role": r.role, "doc_id": r.doc_id, "start": int(r.start),
                "end": int(r.end), "confidence": f"{r.confidence:.2f}", "codes": r.codes or "none"}
               for r in least.itertuples()],
        low_threshold=LOW_CONFIDENCE, redacted=redact, n_roles=by_role["group"].nunique(),
        reps=1000, permutations=2000,
    )
    write_text(html, path)
    return path
