"""`discourse audit`: put the excerpts the model is least sure of in front of a researcher.

Thin click layer over discourse.audit. ``add_audit_commands(cli)`` adds the group.
"""

from __future__ import annotations

from pathlib import Path

import click

from .embed import BACKENDS, DEFAULT_BACKEND
from .errors import DiscourseError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def _warn_if_open(path, advice: str) -> None:
    """Warn (and go on: the lock file may be left from a crash) if a spreadsheet seems to have ``path`` open."""
    from .review_file import open_elsewhere

    how = open_elsewhere(path)
    if how:
        _warn(f"{Path(path).name} {how}: {advice}")


backend_option = click.option(
    "--encoder-backend", "backend", type=click.Choice(BACKENDS), default=DEFAULT_BACKEND, show_default=True,
    help="Only for a queue that lost its model fingerprint (instructions sheet or model_sha256 column): "
         "the backend its predictions were made with, to check them against --model.")


@click.group("audit")
def audit() -> None:
    """Review the model's least certain excerpts and fold the answers back in.

    \b
    1. discourse audit select OUTDIR --budget 100 -o queue.xlsx
    2. a researcher fills in yes/no per code in queue.xlsx
    3. discourse audit apply queue.xlsx          (-> reviewed.parquet beside it)
    4. discourse train corpora/training/train.csv --include-reviewed reviewed.parquet -o models/next
    """


@audit.command("select")
@click.argument("predictions", type=click.Path(exists=True))
@click.option("--budget", required=True, type=click.IntRange(min=1), help="How many excerpts to review.")
@click.option("--random-share", default=0.10, show_default=True, type=click.FloatRange(0, 1),
              help="Share of the budget that is a simple random sample (for an unbiased accuracy estimate).")
@click.option("--per-doc-cap", default=None, type=click.IntRange(min=1),
              help="At most this many uncertain excerpts per document (default: twice each document's share by size, at least 2).")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same queue).")
@click.option("--model", "model_dir", default=None, type=click.Path(file_okay=False),
              help="Model folder for thresholds and codebook (default: the one that made the predictions, else models/default).")
@click.option("--skip-reviewed", "store", default=None, type=click.Path(dir_okay=False),
              help="A reviewed-codes store: its excerpts are not chosen again, for either part of the queue.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="queue.xlsx (for a person) or queue.csv")
def select_cmd(predictions, budget, random_share, per_doc_cap, seed, model_dir, store, output):
    """Choose excerpts to review from a classify folder.

    PREDICTIONS is the folder written by `discourse classify` or its
    predictions.parquet; turns.parquet and texts/ beside it give the context.
    """
    from .audit import read_classify_folder, select_for_review
    from .review_file import MODEL_KEY, write_queue
    from .review_store import model_info, read_store
    from .model import read_model_manifest

    pred, turns, texts, run = read_classify_folder(predictions)
    codes = [c[2:] for c in pred.columns if c.startswith("p_")]
    run_model = run.get("model") or {}
    if model_dir is None:
        guess = DEFAULT_MODEL.parent / str(run_model.get("folder", ""))
        model_dir = guess if run_model.get("folder") and (guess / "manifest.json").is_file() else DEFAULT_MODEL
    manifest = read_model_manifest(model_dir)
    info = model_info(model_dir)
    if list(manifest["codes"]) != codes:
        raise DiscourseError(f"the predictions have codes {', '.join(codes)} but the model has "
                             f"{', '.join(manifest['codes'])}: give the model that made them with --model", model_dir)
    fp = str(run_model.get("manifest_sha256", ""))
    if fp and not info["model_sha256"].startswith(fp):
        _warn(f"the predictions were made by model '{run_model.get('folder')}' ({fp}), not {model_dir}: "
              "its thresholds from run.json are used, the codebook text from --model")
    thresholds = run_model.get("thresholds") or manifest["thresholds"]
    if turns is None or not texts:
        _warn(f"{predictions}: no turns.parquet or texts/ beside the predictions: the queue has no context")
    exclude = read_store(store)["excerpt_id"].tolist() if store and Path(store).exists() else []
    queue = select_for_review(pred, turns, texts, codes, thresholds, budget, random_share=random_share,
                              per_doc_cap=per_doc_cap, seed=seed, exclude=exclude)
    same = not fp or info["model_sha256"].startswith(fp)
    about = {"predictions": Path(predictions).resolve().name, "model": run_model.get("folder") or info["model"],
             MODEL_KEY: info["model_sha256"] if same else fp,
             "budget": budget, "random share": random_share, "seed": seed}
    write_queue(queue, codes, output, codebook=manifest.get("codebook"), about=about)
    n_rand = int((queue["sample"] == "random").sum())
    if len(queue) < budget:
        _warn(f"only {len(queue)} of {budget} excerpts could be chosen (fewer excerpts, or the per-document cap)")
    click.echo(f"{len(queue)} excerpts ({len(queue) - n_rand} uncertain, {n_rand} random) from "
               f"{queue['doc_id'].nunique()} documents -> {output}")


@audit.command("apply")
@click.argument("reviewed", type=click.Path(dir_okay=False))
@click.option("--store", default=None, type=click.Path(dir_okay=False),
              help="Reviewed-codes store (default: reviewed.parquet beside REVIEWED).")
@click.option("--model", "model_dir", default=str(DEFAULT_MODEL), show_default="models/default",
              type=click.Path(file_okay=False), help="The model whose codes were reviewed (recorded as provenance).")
@click.option("--reviewer", default=None, help="Reviewer name for rows whose reviewer cell is blank.")
@backend_option
def apply_cmd(reviewed, store, model_dir, reviewer, backend):
    """Store the answers of a reviewed queue; measure the model.

    Adds the reviewed rows to the reviewed-codes store (with reviewer, date and
    model provenance) and prints, from the random-sample rows, the model's
    accuracy and per-code kappa with 95% intervals, and how many codes
    reviewers corrected.
    """
    from .review_file import read_review, verify_queue_model
    from .review_store import apply_review, format_summary, model_info
    from .model import read_model_manifest

    _warn_if_open(reviewed, "answers not saved there are not applied; save and close it, then apply again "
                            "(a lock file left by a crash can be deleted)")
    manifest = read_model_manifest(model_dir)
    codes = list(manifest["codes"])
    df = read_review(reviewed, codes, reviewer=reviewer)
    if df.empty:
        raise DiscourseError(f"no row has an answer ({df.attrs['skipped']} rows with every code blank): "
                             "fill in yes or no under the codes, save, and apply again", reviewed)
    info = model_info(model_dir)
    verify_queue_model(df, df.attrs.get("about", {}), info, model_dir, reviewed, backend,  # no wrong model stored
                       note=lambda m: click.echo(m, err=True))
    store_path = Path(store) if store else Path(reviewed).parent / "reviewed.parquet"
    summary = apply_review(df, store_path, info, codes=codes)
    click.echo(f"{summary['applied']} reviewed excerpts ({summary['new']} new, {summary['updated']} changed, "
               f"{summary['unchanged']} already stored); {summary['skipped_blank']} rows with no answer skipped "
               f"-> {store_path} ({summary['store_rows']} rows)")
    click.echo(format_summary(summary))


def add_audit_commands(group: click.Group) -> None:
    """Add the `audit` group to the main command group."""
    group.add_command(audit)


@audit.command("review")
@click.argument("queue", type=click.Path(dir_okay=False, exists=True))
@click.option("--reviewer", required=True, help="Your name (recorded with every decision).")
@click.option("--store", default=None, type=click.Path(dir_okay=False),
              help="Reviewed-codes store (default: reviewed.parquet beside QUEUE).")
@click.option("--model", "model_dir", default=str(DEFAULT_MODEL), show_default="models/default",
              type=click.Path(file_okay=False), help="The model whose codes are reviewed.")
@click.option("--port", default=8765, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@backend_option
def review_cmd(queue, reviewer, store, model_dir, port, no_browser, backend):
    """Review a queue in the browser, keyboard-driven (localhost only).

    Each decision goes straight into the reviewed-codes store, as with
    `audit apply`; the queue file is not changed. Stop with Ctrl-C.
    """
    from .review_file import tidy_name
    from .review_store import model_info
    from .model import read_model_manifest
    from .review_page import make_review_server

    if not tidy_name(reviewer):
        raise DiscourseError("--reviewer is blank: give your name")
    _warn_if_open(queue, "answers typed there are not seen by this page (apply them with `discourse audit apply` "
                         "once saved)")
    manifest = read_model_manifest(model_dir)
    store_path = Path(store) if store else Path(queue).parent / "reviewed.parquet"
    try:
        server = make_review_server(queue, manifest["codes"], manifest.get("codebook"), store_path,
                                    model_info(model_dir), reviewer, port=port, model_dir=model_dir, backend=backend,
                                    note=lambda m: click.echo(m, err=True))
    except OSError as exc:
        raise DiscourseError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): try --port 0") from None
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    click.echo(f"reviewing {queue} as {reviewer} at {url} -> {store_path} (Ctrl-C to stop)")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
