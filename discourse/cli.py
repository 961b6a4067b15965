"""The `discourse` command line: thin wrappers over the library functions."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .embed import BACKENDS, DEFAULT_BACKEND, backend_suffix
from .errors import DiscourseError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_MANIFEST = PROJECT_ROOT / "corpora" / "demo" / "manifest.csv"


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def _progress(label: str, show: bool):
    """A progress-bar wrapper for iterables (to stderr, only when useful)."""
    from tqdm import tqdm

    def wrap(items, total: int | None = None):
        return tqdm(items, total=total, desc=label, unit="doc", disable=not show or None, leave=False, file=sys.stderr)

    return wrap


def _load_study(paths, manifest, speakers, strict, outputs: tuple[Path, ...] = ()):
    """Read the study the command line names; ``outputs`` (this run's output files and folders) are never read
    as transcripts when found in a folder given."""
    from .manifest import (default_speakers_path, manifest_for_paths, read_manifest, read_speakers, select_documents,
                           unknown_doc_ids)
    from .study import read_study

    if manifest:
        full = read_manifest(manifest)
        man = select_documents(full, list(paths), outputs)
        spk = read_speakers(speakers) if speakers else read_speakers(default_speakers_path(manifest), optional=True)
    else:
        if not paths:
            raise DiscourseError("give transcript files or folders, or --manifest FILE")
        full = man = manifest_for_paths(list(paths), outputs)
        spk = read_speakers(speakers)
    if man.empty:
        raise DiscourseError("no documents to read: the paths given match no file in the manifest", manifest)
    study = read_study(man, spk, strict=strict, progress=_progress("reading", len(man) > 1), csv_ids=not manifest)
    study.listed |= set(full["doc_id"])
    known = study.listed | {d.doc_id for d in study.documents}  # without a manifest, a CSV's own doc_ids too
    study.warnings += unknown_doc_ids(spk, known, str(manifest) if manifest else "the files given")
    for w in study.warnings:
        _warn(w)
    for doc_id, why in study.skipped:
        _warn(f"skipped {doc_id}: {why}")
    if not study.documents:
        raise DiscourseError("no document could be read", manifest or paths[0])
    return study


def _write_texts(study, folder: Path) -> None:
    from .tables import write_text

    for doc in study.documents:
        write_text(doc.text, folder / f"{doc.doc_id}.txt")


def _remove_stale(study, outdir: Path, cache: bool = True) -> list[str]:
    """Delete the texts (``texts/<doc_id>.txt``) and, with ``cache`` (classify's), the saved excerpts
    (``.cache/docs``) that OUTDIR holds of documents no longer in the study; say so; return their doc_ids, sorted."""
    from .pipeline import cached_doc_ids, remove_cached

    keep = study.listed | {d.doc_id for d in study.documents} | {d for d, _ in study.skipped}
    texts = {f.stem: f for f in (outdir / "texts").glob("*.txt") if f.is_file() and not f.name.startswith(".")}
    saved = outdir / ".cache" / "docs"
    cached = cached_doc_ids(saved) if cache else set()
    stale = sorted((set(texts) | cached) - keep)
    for doc_id in stale:
        if doc_id in texts:
            texts[doc_id].unlink()
        if cache:
            remove_cached(saved, doc_id)
    if stale:
        what = "the texts and saved excerpts" if cache else "the texts"
        _warn(f"{outdir}: removed {what} of {len(stale)} document(s) no longer in the study: "
              + ", ".join(stale[:8]) + (" ..." if len(stale) > 8 else ""))
    return stale


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="discourse")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Code interview transcripts against a discourse codebook, offline."""


manifest_option = click.option(
    "--manifest", type=click.Path(dir_okay=False), help="manifest.csv: doc_id, file, trust, other metadata."
)
speakers_option = click.option(
    "--speakers", type=click.Path(dir_okay=False), help="Speaker table (doc_id, speaker, role); default: speakers.csv beside the manifest."
)
strict_option = click.option("--strict", is_flag=True, help="Stop at the first unreadable document instead of skipping it.")


@cli.command("segment")
@click.argument("paths", nargs=-1, type=click.Path())
@manifest_option
@speakers_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="excerpts.parquet or excerpts.csv")
@click.option("--max-sentences", default=3, show_default=True, help="Sentences per excerpt at most.")
@click.option("--sentences", "method", type=click.Choice(["parser", "senter", "rule"]), default="parser", show_default=True, help="How spaCy finds sentence boundaries.")
@strict_option
def segment_cmd(paths, manifest, speakers, output, max_sentences, method, strict):
    """Cut transcripts into excerpts inside speaker turns, with exact offsets.

    The canonical text of each document (the text the offsets index) is
    written to a texts/ folder beside OUTPUT, and the turns to turns.parquet.
    """
    from .pipeline import SegmentSettings, segment_study
    from .segment import load_pipeline
    from .tables import write_table

    out = Path(output)
    study = _load_study(paths, manifest, speakers, strict, (out, out.parent / "texts", out.parent / "turns.parquet"))
    settings = SegmentSettings(method=method, max_sentences=max_sentences)
    read = len(study.skipped)
    excerpts = segment_study(study, load_pipeline(method), settings, strict)
    for doc_id, why in study.skipped[read:]:
        _warn(f"skipped {doc_id}: {why}")
    _write_texts(study, out.parent / "texts")
    write_table(study.turns, out.parent / "turns.parquet")
    write_table(excerpts, out)
    _remove_stale(study, out.parent, cache=False)  # segment keeps no saved excerpts
    n_done = len({d.doc_id for d in study.documents} - {d for d, _ in study.skipped})
    click.echo(
        f"{n_done} documents, {len(study.turns)} turns, {len(excerpts)} excerpts -> {out}"
        + (f" ({len(study.skipped)} skipped)" if study.skipped else "")
    )


DEFAULT_MODEL = PROJECT_ROOT / "models" / "default"
DEFAULT_CODEBOOK = PROJECT_ROOT / "corpora" / "codebook.yaml"
DEFAULT_TEST = PROJECT_ROOT / "corpora" / "test" / "test.csv"

model_option = click.option(
    "--model", "model_dir", default=str(DEFAULT_MODEL), show_default="models/default",
    type=click.Path(file_okay=False), help="A trained model folder.",
)

backend_option = click.option(
    "--encoder-backend", "backend", type=click.Choice(BACKENDS), default=DEFAULT_BACKEND, show_default=True,
    help="How the encoder runs: torch, or onnx-int8 (int8-quantized with onnxruntime, exported once into the "
    "cache: faster, and its vectors differ from torch's, see docs/backends.md). Same encoder either way.",
)


def _load_model(model_dir, backend: str = DEFAULT_BACKEND):
    from .model import DiscourseClassifier

    return DiscourseClassifier.load(model_dir, backend=backend)


@cli.command("train")
@click.argument("coded", type=click.Path(dir_okay=False))
@click.option("--codebook", default=str(DEFAULT_CODEBOOK), show_default="corpora/codebook.yaml", type=click.Path(dir_okay=False), help="Codebook YAML.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model folder to write, e.g. models/mine.")
@click.option("--features", type=click.Choice(["embedding+tfidf", "embedding", "tfidf"]), default=None, help="Feature set (default: the shipped winner).")
@click.option("--C", "C", type=float, default=None, help="Inverse regularisation strength.")
@click.option("--tfidf-weight", type=float, default=None, help="Weight of the TF-IDF block beside the embeddings.")
@click.option("--tune-layers", type=click.IntRange(min=0), default=None, help="Encoder layers to tune on the excerpts, inside every fold (default 4: the most accurate, about an hour for 2,300 excerpts on 2 cores; 0 keeps the encoder frozen: a minute or two, less accurate).")
@click.option("--sentence-max/--no-sentence-max", default=None, help="Also embed each sentence of an excerpt and add their maximum beside the excerpt's embedding (default on: more accurate; --no-sentence-max predicts about twice as fast).")
@click.option("--encoder", default="all-mpnet-base-v2", show_default=True, help="Packaged encoder name (all-mpnet-base-v2, all-MiniLM-L6-v2) or a local sentence-transformers folder.")
@click.option("--include-reviewed", "reviewed", type=click.Path(dir_okay=False), default=None, help="Reviewed-codes store from `discourse audit apply` to add to the training data.")
@click.option("--group-by", default=None, help="Column to group cross-validation by (default: batch, source or doc_id).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the encoder tuning and, when cross-validation is not grouped, of the folds (default 0). Another seed retrains as reproducibly; comparing two shows how much of a difference is chance.")
@backend_option
def train_cmd(coded, codebook, output, features, C, tfidf_weight, tune_layers, sentence_max, encoder, reviewed, group_by, seed, backend):
    """Train a model on hand-coded excerpts (CSV/Parquet with text and codes)."""
    import pandas as pd

    from .codebook import load_codebook
    from .coded import cv_groups, read_coded
    from .embed import Encoder
    from .model import DiscourseClassifier, ModelConfig
    from .tables import check_writable_folder

    check_writable_folder(output)
    book = load_codebook(codebook)
    df = read_coded(coded, book.ids)
    for w in df.attrs.get("warnings", ()):
        _warn(w)
    n_reviewed = 0
    if reviewed:
        from .review_store import reviewed_as_coded

        extra = reviewed_as_coded(reviewed, book.ids)
        extra = extra[~extra["text"].isin(set(df["text"]))]
        n_reviewed = len(extra)
        df = pd.concat([df, extra], ignore_index=True)
    params = {k: v for k, v in {"features": features, "C": C, "tfidf_weight": tfidf_weight,
                                "tune_layers": tune_layers, "sentence_max": sentence_max, "seed": seed}.items() if v is not None}
    config = ModelConfig(**params)
    enc = Encoder(encoder, backend=backend) if "embedding" in config.features else None
    if group_by:
        if group_by not in df.columns:
            raise DiscourseError(f"no column '{group_by}' to group by", coded)
        col, groups = group_by, df[group_by].astype(str).tolist()
    else:
        col, groups = cv_groups(df)
    model = DiscourseClassifier(book.ids, encoder=enc, config=config)
    model.fit(df["text"].tolist(), df["codes"].tolist(), groups=groups, progress=len(df) > 2000 or config.tune_layers > 0)
    model.save(output, codebook=book, extra={"training_data": {"file": Path(coded).name, "rows": len(df), "reviewed_rows": n_reviewed, "cv_grouped_by": col}})
    cv = model.cv_
    nested = cv["nested"]
    click.echo(f"trained on {len(df)} excerpts ({n_reviewed} reviewed); cross-validated macro-F1 {nested['macro_f1']:.3f}, "
               f"ECE {nested['ece']:.3f} (each fold scored with thresholds chosen on the others; "
               f"{cv['macro_f1']:.3f} with thresholds chosen on all folds) -> {output}")


@cli.command("evaluate")
@model_option
@click.option("--test", "test_path", default=str(DEFAULT_TEST), show_default="corpora/test/test.csv", type=click.Path(dir_okay=False), help="Hand-coded test excerpts, never used in training.")
@click.option("--second-coder", "second_path", default=None, type=click.Path(dir_okay=False),
              help="The same test excerpts coded blind by a second coder (columns id, codes): sets the model beside the human ceiling.")
@click.option("-o", "--output", default="evaluation", show_default=True, type=click.Path(file_okay=False), help="Folder for evaluation.md, evaluation.csv, excerpts.csv (each excerpt's hand and model codes), reliability.png (and ceiling.csv).")
@backend_option
def evaluate_cmd(model_dir, test_path, second_path, output, backend):
    """Measure a model against hand-coded test excerpts: P/R/F1, kappa, alpha, calibration."""
    from .coded import read_coded, read_second_coding
    import json

    from .evaluate import (agreement_table, bootstrap_intervals, ceiling_table, excerpt_table,
                           expected_calibration_error, plot_reliability, reliability_curve, to_matrix, without_nan)
    from .predict import PROBA_DECIMALS
    from .reporting import ceiling_markdown, evaluation_markdown
    from .tables import check_writable_folder, write_table, write_text

    check_writable_folder(output)
    model = _load_model(model_dir, backend)
    df = read_coded(test_path, model.codes)
    for w in df.attrs.get("warnings", ()):
        _warn(w)
    second = read_second_coding(second_path, df, model.codes, test_path) if second_path else None
    P = model.predict_proba(df["text"].tolist())
    Y = to_matrix(df["codes"].tolist(), model.codes)
    table = agreement_table(Y, P >= model.thresholds_, model.codes)
    table = table.merge(bootstrap_intervals(Y, P >= model.thresholds_, model.codes), on="code", how="left")
    ece = expected_calibration_error(Y, P)
    out = Path(output)
    write_table(table.round(4), out / "evaluation.csv")
    plot_reliability(Y, P, out / "reliability.png", title=f"{Path(model_dir).name} on {Path(test_path).name}")
    write_table(reliability_curve(Y, P).round(4), out / "reliability.csv")
    macro = table.set_index("code").loc["macro"]
    summary = {"file": Path(test_path).name, "n": len(df), "macro_f1": round(float(macro.f1), 4),
               "micro_f1": round(float(table.set_index("code").loc["micro"].f1), 4),
               "mean_kappa": round(float(macro.kappa), 4), "min_kappa": round(float(table.kappa[:len(model.codes)].min()), 4),
               "ece": round(float(ece), 4), "encoder_backend": backend}
    md = evaluation_markdown(table, ece, len(df), Path(model_dir).name, Path(test_path).name)
    if second is not None:
        rows = df.index.get_indexer(second.index)
        ceiling = ceiling_table(Y[rows], to_matrix(second["second_codes"].tolist(), model.codes),
                                P[rows] >= model.thresholds_, model.codes)
        write_table(ceiling.round(4), out / "ceiling.csv")
        per_code = ceiling[ceiling.code != "mean"]
        summary["second_coder"] = {"file": Path(second_path).name, "n": len(second),
                                   "mean_human_kappa": round(float(ceiling.human_kappa.iloc[-1]), 4),
                                   "codes_meeting_ceiling": int(per_code.met.sum()),
                                   "codes_below_ceiling": per_code.code[~per_code.met].tolist()}
        md += ceiling_markdown(ceiling, Path(second_path).name, len(df))
    elif (out / "ceiling.csv").exists():
        (out / "ceiling.csv").unlink()  # an earlier run's, against another second coding: not this evaluation's
    write_table(excerpt_table(df, P, model.thresholds_, model.codes, second, PROBA_DECIMALS), out / "excerpts.csv")
    write_text(json.dumps(without_nan(summary), indent=2) + "\n", out / "summary.json")
    write_text(md, out / "evaluation.md")
    click.echo(md)


@cli.command("predict")
@click.argument("table", type=click.Path(dir_okay=False))
@model_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="OUT.csv, OUT.parquet or OUT.xlsx")
@click.option("--adapt-priors", is_flag=True, help="Adjust probabilities to this table's own prevalence of each code (EM prior correction).")
@backend_option
def predict_cmd(table, model_dir, output, adapt_priors, backend):
    """Add p_<code> probabilities and assigned codes to any table with a text column."""
    from .predict import adapt_table, predict_table, proba_columns
    from .tables import check_output_path, read_table, write_table

    check_output_path(output)
    df = read_table(table, required=("text",), exact=True)  # other columns keep their types
    model = _load_model(model_dir, backend)
    replaced = [c for c in ["codes", *proba_columns(model.codes)] if c in df.columns]
    if replaced:
        _warn(f"{table}: column(s) {', '.join(replaced)} replaced by the model's predictions in {output}")
    out, n_empty = predict_table(df, model, progress=sys.stderr.isatty())  # a bar for people, none in logs
    if n_empty:
        _warn(f"{table}: {n_empty} row(s) with empty text get no probabilities and no codes")
    if adapt_priors:
        out, prevalence = adapt_table(out, model)
        if prevalence:
            click.echo("prevalence in this table (EM): " + ", ".join(f"{c} {v:.3f}" for c, v in prevalence.items()), err=True)
    write_table(out, output)
    click.echo(f"{len(out)} rows -> {output}")


def classify_to(outdir: Path, paths, manifest, speakers, model_dir, strict: bool, adapt: bool = False,
                backend: str = DEFAULT_BACKEND, scheduler: str | None = None) -> dict:
    """Classify a study into OUTDIR (texts/, turns.parquet, excerpts.parquet, predictions.*, run.json)."""
    import json

    from .pipeline import SegmentSettings, classify_study, model_fingerprint
    from .segment import load_pipeline, segmenter_fingerprint
    from .tables import remove_stale_temporaries, write_table, write_text

    if remove_stale_temporaries(outdir):
        _warn(f"{outdir}: removed temporary files left by an interrupted run")
    model = _load_model(model_dir, backend)
    study = _load_study(paths, manifest, speakers, strict, (outdir,))
    settings = SegmentSettings()
    fingerprint = model_fingerprint(model_dir)
    model_key = fingerprint + backend_suffix(backend)  # finished documents are kept per backend
    map_chunks = None
    if scheduler:
        from .cluster import map_on_cluster

        map_chunks = map_on_cluster(scheduler, model_dir, settings, backend)
    pred, stats = classify_study(
        study, model, model_key, lambda: load_pipeline(settings.method), outdir / ".cache",
        settings, progress=_progress("classifying", len(study.documents) > 1), strict=strict, adapt=adapt,
        map_chunks=map_chunks,
    )
    _write_texts(study, outdir / "texts")
    write_table(study.turns, outdir / "turns.parquet")
    excerpt_cols = [c for c in pred.columns if not c.startswith("p_") and c not in ("codes", "confidence")]
    write_table(pred[excerpt_cols], outdir / "excerpts.parquet")
    write_table(pred, outdir / "predictions.parquet")
    write_table(pred, outdir / "predictions.csv")
    skipped_ids = {d for d, _ in study.skipped}
    n_done = sum(d.doc_id not in skipped_ids for d in study.documents)  # read, and classified
    run = {
        "model": {"folder": Path(model_dir).name, "manifest_sha256": fingerprint,
                  "codes": model.codes, "thresholds": dict(zip(model.codes, model.thresholds_)),
                  "encoder_backend": backend},
        "segmentation": {**settings.__dict__, "segmenter": segmenter_fingerprint(settings.method)},
        "adapt_priors": stats.get("adapted_prevalence"),
        "documents": [{"doc_id": d.doc_id, "file": Path(d.path).name, "format": d.format, "sha256": d.sha256}
                      for d in sorted(study.documents, key=lambda d: d.doc_id)],
        "skipped": [{"doc_id": d, "reason": r} for d, r in sorted(study.skipped)],
        "counts": {"documents": n_done, "excerpts": int(len(pred)),
                   "speakers": int((pred["doc_id"] + "/" + pred["speaker"]).nunique())},
    }
    write_text(json.dumps(run, indent=2) + "\n", outdir / "run.json")
    _remove_stale(study, outdir)
    if study.skipped:
        click.echo(f"skipped {len(study.skipped)} document(s):", err=True)
        for d, r in sorted(study.skipped):
            click.echo(f"  {d}: {r}", err=True)
    click.echo(
        f"{n_done} documents ({stats['reused']} reused), "
        f"{len(pred)} excerpts -> {outdir / 'predictions.parquet'}"
    )
    return run


@cli.command("classify")
@click.argument("paths", nargs=-1, type=click.Path())
@manifest_option
@speakers_option
@model_option
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Output folder.")
@strict_option
@click.option("--adapt-priors", is_flag=True, help="Adjust probabilities to this corpus's own prevalence of each code (EM prior correction).")
@backend_option
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Send documents to a Dask distributed scheduler (e.g. tcp://10.0.0.5:8786) instead of working them here.")
def classify_cmd(paths, manifest, speakers, model_dir, output, strict, adapt_priors, backend, scheduler):
    """Read, segment and code every transcript; resumes finished documents."""
    classify_to(Path(output), paths, manifest, speakers, model_dir, strict, adapt_priors, backend, scheduler)


def _read_predictions(path):
    from .tables import read_table

    p = Path(path)
    if p.is_dir():
        p = p / "predictions.parquet"
    df = read_table(p, required=("excerpt_id", "doc_id", "speaker", "codes"))
    codes = [c[2:] for c in df.columns if c.startswith("p_")]
    if not codes:
        raise DiscourseError("no p_<code> probability columns: is this a predictions table?", p)
    for c in codes:
        df[f"p_{c}"] = df[f"p_{c}"].astype(float)
    df["codes"] = df["codes"].fillna("").astype(str)
    return df, codes


def profile_to(pred, codes, by, output: Path):
    from .profiles import parse_groupings, profiles
    from .tables import write_sheets, write_table

    tables = profiles(pred, codes, parse_groupings(by))
    if output.suffix.lower() == ".xlsx":
        write_sheets({name.replace(",", " x "): t for name, t in tables.items()}, output)
    else:
        import pandas as pd

        write_table(pd.concat(tables.values(), ignore_index=True), output)
    return tables


@cli.command("profile")
@click.argument("predictions", type=click.Path())
@click.option("--by", "by", multiple=True, default=("role", "trust"), show_default=True,
              help="Column(s) to group by; repeat for several groupings; 'trust,role' crosses two.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="profiles.csv or profiles.xlsx (one sheet per grouping).")
def profile_cmd(predictions, by, output):
    """Discourse prevalence per group, with speaker-bootstrap intervals and a test across groups."""
    pred, codes = _read_predictions(predictions)
    tables = profile_to(pred, codes, by, Path(output))
    click.echo(f"{sum(len(t) for t in tables.values())} rows ({', '.join(tables)}) -> {output}")


@cli.command("report")
@click.argument("outdir", type=click.Path(file_okay=False))
@model_option
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="HTML file (default: OUTDIR/report.html).")
@click.option("--redact", is_flag=True, help="Replace names, places, organisations, contact details and identifiers in quoted excerpts; named speakers become 'Speaker N'.")
def report_cmd(outdir, model_dir, output, redact):
    """Write one self-contained HTML report (works offline) from a classify folder."""
    from .report import build_report

    path = Path(output) if output else Path(outdir) / "report.html"
    build_report(Path(outdir), Path(model_dir), path, redact=redact)
    click.echo(f"report -> {path}")


@cli.command("run")
@click.option("-o", "--output", default="out", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@model_option
@backend_option
def run_cmd(output, model_dir, backend):
    """The main job on the bundled demo corpus: classify, profile, report."""
    from .report import build_report

    if not DEMO_MANIFEST.exists():
        raise DiscourseError("the demo corpus is missing (corpora/demo/manifest.csv)", DEMO_MANIFEST)
    out = Path(output)
    classify_to(out, (), str(DEMO_MANIFEST), None, model_dir, False, backend=backend)
    pred, codes = _read_predictions(out / "predictions.parquet")
    by = ("role", "trust", "trust,role")
    profile_to(pred, codes, by, out / "profiles.csv")
    profile_to(pred, codes, by, out / "profiles.xlsx")
    build_report(out, Path(model_dir), out / "report.html")
    click.echo(f"profiles -> {out / 'profiles.csv'}, {out / 'profiles.xlsx'}")
    click.echo(f"report   -> {(out / 'report.html').resolve()}")


def _add_command_groups() -> None:
    from .cli_audit import add_audit_commands
    from .cli_exchange import add_exchange_commands

    add_audit_commands(cli)
    add_exchange_commands(cli)


_add_command_groups()


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line and exit 2; internal errors exit 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cli.main(args=argv, prog_name="discourse", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare `discourse` or `discourse audit`: the help
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:  # one line, as every other error: what is wrong, and where the help is
        command = exc.ctx.command_path if exc.ctx else "discourse"
        click.echo(f"error: {' '.join(exc.format_message().split())} (see '{command} --help')", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except DiscourseError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.line()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for details and report it)", err=True
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
