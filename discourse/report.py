"""The HTML report: one self-contained file (inline SVG figures, inline CSS, no CDN)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pandas as pd
from markupsafe import Markup

from . import figures
from .errors import DiscourseError
from .model import read_model_manifest
from .pipeline import check_same_model, read_run
from .profiles import PROFILE_FILES, profiles, read_profile_file, same_profile
from .tables import write_text

LOW_CONFIDENCE = 0.7  # an excerpt is low-confidence when its decision confidence is below this
TOP_EXCERPTS = 3
EVIDENCE_CAP = 150
SHOWN = ("role", "trust")  # the groupings every report shows, whatever profile files there are
MAX_BAR_GROUPS = 30  # a further grouping with more groups than this is shown as a table, without a figure


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
    """The test across groups of each code ('' where there is none: one group, or no excerpts)."""
    return [{"code": c, "p": _p(prof.loc[prof.code == c, "p_value"].iloc[0]) if (prof.code == c).any() else ""}
            for c in codes]


def _grouping(name: str, prof: pd.DataFrame, codes: list[str], labels: dict[str, str]) -> dict:
    """One further grouping of a profile file, as the report shows it: its table, test row and (few groups) figure."""
    n = prof["group"].nunique()
    return {"id": "by-" + re.sub(r"\W+", "-", name), "title": _title(name), "rows": _profile_rows(prof, codes),
            "tests": _tests(prof, codes), "n_groups": n,
            "bars_svg": figures.prevalence_bars(prof, codes, labels) if n <= MAX_BAR_GROUPS else ""}


def _evidence(pred: pd.DataFrame, codes: list[str], redact) -> list[dict]:
    out = []
    for c in codes:
        col = f"p_{c}"
        has = pred[pred["codes"].map(lambda cs, c=c: c in cs.split(";")).astype(bool)]  # bool even with no rows
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


def _profile_files(outdir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The profile tables in a classify folder by file name, and why any there could not be read."""
    found, errors = {}, {}
    for name in PROFILE_FILES:
        if (outdir / name).is_file():
            try:
                found[name] = read_profile_file(outdir / name)
            except DiscourseError as exc:
                errors[name] = exc.message
    return found, errors


def _further_groupings(found: dict[str, pd.DataFrame], columns, redact: bool) -> tuple[list[str], dict[str, str]]:
    """Groupings of the profile files beyond role and trust that the report can show, and why others are not."""
    shown: list[str] = []
    left: dict[str, str] = {}
    for table in found.values():
        for g in dict.fromkeys(table["grouping"].astype(str)):
            by = g.split(",")
            if g in SHOWN or g in shown or g in left:
                continue
            missing = [c for c in by if c not in columns]
            if missing:
                left[g] = f"the predictions have no column {', '.join(missing)}"
            elif redact and "speaker" in by:
                left[g] = "its groups are speaker labels, and this report is redacted"
            else:
                shown.append(g)
    return shown, left


def _title(grouping: str) -> str:
    """A grouping as a reader sees it: ``trust,role`` is ``trust × role``."""
    return " × ".join(grouping.split(","))


def _and(items: list[str]) -> str:
    items = [_title(g) for g in items]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _file_sentence(name: str, table: pd.DataFrame, tables: dict[str, pd.DataFrame], left: dict[str, str]) -> Markup:
    """What one profile file holds, whether its numbers are the ones shown here, and what is not shown of it."""
    held = list(dict.fromkeys(table["grouping"].astype(str)))
    stale = [g for g in held if g in tables and not same_profile(table[table["grouping"].astype(str) == g], tables[g])]
    same = [g for g in held if g in tables and g not in stale]
    out = Markup("<code>{}</code> ").format(name)
    out += Markup("holds the same numbers by {}.").format(_and(same)) if same else Markup("holds no table shown here.")
    if stale:
        out += Markup(" Its tables by {} do not match these predictions (it was made from other predictions, or "
                      "before classify ran again): run <code>discourse profile</code> again to bring it up to "
                      "date.").format(_and(stale))
    gone = [f"{g} ({left[g]})" for g in held if g in left]
    if gone:
        out += Markup(" Not shown here: its grouping{} {}.").format("s" if len(gone) > 1 else "", "; ".join(gone))
    return out


def _provenance(found: dict[str, pd.DataFrame], errors: dict[str, str], tables: dict[str, pd.DataFrame],
                left: dict[str, str]) -> list[Markup]:
    """Sentences naming the profile files in the folder and how the tables shown stand to them."""
    out = [Markup("<code>{}</code> is there but could not be read ({}).").format(name, why)
           for name, why in errors.items()]
    out += [_file_sentence(name, table, tables, left) for name, table in found.items()]
    held = {g for t in found.values() for g in t["grouping"].astype(str)}
    absent = [g for g in SHOWN if g not in held]
    if absent:
        out.append(Markup("No profile file {}holds the tables by {}: <code>discourse profile OUTDIR --by role "
                          "--by trust -o OUTDIR/profiles.xlsx</code> writes them with the same numbers, and each "
                          "further <code>--by</code> grouping a profile file here holds is shown in this report "
                          "too.").format("in this folder " if not found else "", _and(absent)))
    return out


def _doc_ids(entries) -> list[str]:
    """The doc_ids of run.json's ``documents`` or ``skipped`` entries."""
    return [str(e.get("doc_id")) for e in entries or [] if isinstance(e, dict)]


def _no_talk(doc: str, turns: pd.DataFrame, shown: Callable[[str, str], str], min_words) -> str:
    """Why one document read gave no excerpt: no turns, only interviewer turns, or respondent turns too short."""
    talk = turns[turns["role"] != "interviewer"] if "role" in turns else turns
    who = ", ".join(sorted({shown(doc, str(s)) for s in (talk if len(talk) else turns)["speaker"]}))
    if turns.empty:
        return f"{doc}: no speaker turns were found in it"
    if talk.empty:
        return (f"{doc}: all {len(turns)} turns are interviewer turns ({who}), so there is no respondent talk to "
                "code; if a respondent's label was read as part of an interviewer's turn, check the labels")
    need = f" (an excerpt needs at least {min_words} words)" if min_words else ""
    return f"{doc}: {len(talk)} respondent turn(s) ({who}) gave no excerpt{need}"


def _why_empty(outdir: Path, run: dict, shown: Callable[[str, str], str]) -> list[str]:
    """Why a folder has no respondent excerpts, document by document, from run.json and turns.parquet."""
    skipped = run.get("skipped") or []
    out = [f"{s.get('doc_id')}: skipped ({s.get('reason')})" for s in skipped if isinstance(s, dict)]
    path = outdir / "turns.parquet"
    turns = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["doc_id", "speaker"])
    doc_ids = turns["doc_id"].astype(str)
    read = set(_doc_ids(run.get("documents"))) - set(_doc_ids(skipped)) | set(doc_ids)
    min_words = (run.get("segmentation") or {}).get("min_words")
    return out + [_no_talk(doc, turns[doc_ids == doc], shown, min_words) for doc in sorted(read)]


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
    pred["codes"] = pred["codes"].fillna("").astype(str)
    found, errors = _profile_files(outdir)
    further, left = _further_groupings(found, pred.columns, redact)
    tables = profiles(pred, codes, [["role"], ["trust"]] + [g.split(",") for g in further])
    by_role, by_trust = tables["role"], tables["trust"]
    redactor, shown = None, {}
    if redact:
        from .redact import Redactor, pseudonyms

        table = pd.read_parquet(outdir / "turns.parquet", columns=["doc_id", "speaker"]) \
            if (outdir / "turns.parquet").exists() else pred[["doc_id", "speaker"]]
        redactor = Redactor(names=table["speaker"].unique())
        shown = pseudonyms(table)  # after the profiles: they resample the speakers as labelled
        pred = pred.assign(speaker=pd.Series([shown.get((str(d), str(s)), s) for d, s in zip(pred["doc_id"], pred["speaker"])],
                                             index=pred.index, dtype=object))  # text even with no rows
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
        "read": int((run.get("counts") or {}).get("documents", len(set(_doc_ids(run.get("documents")))
                                                                  - set(_doc_ids(run.get("skipped")))))),
    }
    empty = [] if len(pred) else _why_empty(outdir, run, lambda d, s: shown.get((d, s), s))
    prevalence_overall = {c: float(pred[f"p_{c}"].mean()) for c in codes}
    env = jinja2.Environment(loader=jinja2.PackageLoader("discourse", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(
        codes=codes, labels=labels, counts=counts, run=run, card=card, empty=empty,
        prevalence_overall=prevalence_overall, provenance=_provenance(found, errors, tables, left),
        heatmap_svg=figures.heatmap(by_role, codes, labels),
        role_bars_svg=figures.prevalence_bars(by_role, codes, labels),
        trust_bars_svg=figures.prevalence_bars(by_trust, codes, labels),
        role_rows=_profile_rows(by_role, codes), trust_rows=_profile_rows(by_trust, codes),
        role_tests=_tests(by_role, codes), trust_tests=_tests(by_trust, codes),
        further=[_grouping(g, tables[g], codes, labels) for g in further],
        evidence=_evidence(pred, codes, red),
        least=[{"text": red(r.text), "speaker": r.speaker, "role": r.role, "doc_id": r.doc_id, "start": int(r.start),
                "end": int(r.end), "confidence": f"{r.confidence:.2f}", "codes": r.codes or "none"}
               for r in least.itertuples()],
        low_threshold=LOW_CONFIDENCE, redacted=redact, n_roles=by_role["group"].nunique(),
        reps=1000, permutations=2000,
    )
    write_text(html, path)
    return path
