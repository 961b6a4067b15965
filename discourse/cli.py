"""The `discourse` command line: thin wrappers over the library functions."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .errors import DiscourseError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_MANIFEST = PROJECT_ROOT / "corpora" / "demo" / "manifest.csv"


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def _progress(label: str, show: bool):
    """A progress-bar wrapper for iterables (to stderr, only when useful)."""
    from tqdm import tqdm

    def wrap(items):
        return tqdm(items, desc=label, unit="doc", disable=not show or None, leave=False, file=sys.stderr)

    return wrap


def _load_study(paths, manifest, speakers, strict):
    from .manifest import default_speakers_path, manifest_for_paths, read_manifest, read_speakers, select_documents
    from .study import read_study

    if manifest:
        man = select_documents(read_manifest(manifest), list(paths))
        spk = read_speakers(speakers or default_speakers_path(manifest))
    else:
        if not paths:
            raise DiscourseError("give transcript files or folders, or --manifest FILE")
        man = manifest_for_paths(list(paths))
        spk = read_speakers(speakers)
    if man.empty:
        raise DiscourseError("no documents to read: the paths given match no file in the manifest", manifest)
    study = read_study(man, spk, strict=strict, progress=_progress("reading", len(man) > 1))
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


def _segment_study(study, method: str, max_sentences: int):
    from .segment import load_pipeline, segment

    nlp = load_pipeline(method)
    return segment(study.turns, nlp, max_sentences=max_sentences)


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
    from .tables import write_table

    study = _load_study(paths, manifest, speakers, strict)
    excerpts = _segment_study(study, method, max_sentences)
    out = Path(output)
    _write_texts(study, out.parent / "texts")
    write_table(study.turns, out.parent / "turns.parquet")
    write_table(excerpts, out)
    click.echo(
        f"{len(study.documents)} documents, {len(study.turns)} turns, {len(excerpts)} excerpts -> {out}"
        + (f" ({len(study.skipped)} skipped)" if study.skipped else "")
    )


@cli.command("run")
@click.option("-o", "--output", default="out", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
def run_cmd(output):
    """Run the main job on the bundled demo corpus."""
    from .tables import write_table

    if not DEMO_MANIFEST.exists():
        raise DiscourseError("the demo corpus is missing (corpora/demo/manifest.csv)", DEMO_MANIFEST)
    study = _load_study((), str(DEMO_MANIFEST), None, False)
    excerpts = _segment_study(study, "parser", 3)
    out = Path(output)
    _write_texts(study, out / "texts")
    write_table(study.turns, out / "turns.parquet")
    write_table(excerpts, out / "excerpts.parquet")
    write_table(excerpts, out / "excerpts.csv")
    click.echo(f"{len(study.documents)} documents, {len(excerpts)} excerpts -> {out / 'excerpts.csv'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line and exit 2; internal errors exit 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cli.main(args=argv, prog_name="discourse", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
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
