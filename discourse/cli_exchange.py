"""REFI-QDA exchange commands (NVivo, ATLAS.ti, MAXQDA, QualCoder): thin wrappers over discourse.qdpx.

``add_exchange_commands(cli)`` adds import-qdpx, import-qdc, export-qdc and
export-qdpx to the main click group.
"""

from __future__ import annotations

from pathlib import Path

import click

from .errors import DiscourseError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"
MAX_SHOWN = 10


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def _warn_all(lines: list[str], what: str) -> None:
    for line in lines[:MAX_SHOWN]:
        _warn(line)
    if len(lines) > MAX_SHOWN:
        _warn(f"... and {len(lines) - MAX_SHOWN} more {what}")


def _codebook(path):
    from .codebook import default_codebook_path, load_codebook

    return load_codebook(path or default_codebook_path())


def _suffix(path: str, suffixes: tuple[str, ...]) -> Path:
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise DiscourseError(f"the output must end in {' or '.join(suffixes)}", p)
    return p


codebook_option = click.option(
    "--codebook", default=None, show_default="corpora/codebook.yaml", type=click.Path(dir_okay=False),
    help="Codebook YAML.",
)


@click.command("import-qdpx")
@click.argument("project", type=click.Path(dir_okay=False))
@click.option("--map", "map_path", type=click.Path(dir_okay=False),
              help="YAML {QDA code name or Parent/Child path: codebook id}; default: codes named like codebook ids.")
@codebook_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="coded.csv or coded.parquet")
@click.option("--sources", "sources_dir", type=click.Path(file_okay=False),
              help="Also write the project's texts here as transcripts/ with manifest.csv and speakers.csv.")
def import_qdpx_cmd(project, map_path, codebook, output, sources_dir):
    """Read hand coding from a REFI-QDA project (.qdpx) as a coded excerpts table.

    Each coder's codes on one span make one row (text, codes, coder, source,
    start, end, and role/trust from the project's cases). Each code the map
    does not cover is named once; selections coded only with such codes are
    skipped and listed; excerpts that run over two speakers' turns are counted.
    """
    from .qdpx import code_coverage, coded_from_project, extract_sources, read_code_map, read_qdpx
    from .tables import write_table

    _suffix(output, (".csv", ".parquet"))
    book = _codebook(codebook)
    code_map = read_code_map(map_path, book.ids) if map_path else None
    proj = read_qdpx(project)
    _warn_all(proj.warnings, "warnings")
    coded, report = coded_from_project(proj, code_map, book.ids)
    if coded.empty and len(proj.codings):  # checked before anything is written
        cov = code_coverage(proj, code_map, book.ids)
        shown = ", ".join(f"'{c}'" for c in cov["code"][:8]) + (" ..." if len(cov) > 8 else "")
        raise DiscourseError(
            f"none of the project's codes ({shown}) map to the codebook ({', '.join(book.ids)}): "
            "write a map file and give it with --map (see docs/qda-exchange.md)", project)
    if sources_dir:
        manifest, speakers, warns = extract_sources(proj, sources_dir)
        _warn_all(warns, "warnings")
        click.echo(f"{len(manifest)} transcripts, {len(speakers)} speakers -> {Path(sources_dir) / 'manifest.csv'}")
    skipped = [r for r in report if ": skipped" in r]
    _warn_all([r for r in report if ": skipped" not in r], "warnings")  # one per uncovered code, so all are shown
    _warn_all(skipped, "skipped selections")
    write_table(coded, output)
    coders = coded["coder"].nunique() if len(coded) else 0
    sources = coded["source"].nunique() if len(coded) else 0
    click.echo(f"{len(coded)} coded excerpts ({coders} coders, {sources} sources; {len(skipped)} skipped) -> {output}")


@click.command("import-qdc")
@click.argument("qdc", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="codebook.yaml")
def import_qdc_cmd(qdc, output):
    """Turn a REFI-QDA codebook (.qdc, or a .qdpx's codebook) into a codebook YAML.

    Nested codes become 'Parent/Child' with id parent_child; folders that cannot
    be coded only lend their name to the path.
    """
    import yaml

    from .qdpx import import_qdc
    from .tables import write_text

    _suffix(output, (".yaml", ".yml"))
    data = import_qdc(qdc)
    header = f"# Imported from {Path(qdc).name} by `discourse import-qdc`: check labels and definitions.\n"
    write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), output)
    click.echo(f"{len(data['codes'])} codes -> {output}")


@click.command("export-qdc")
@codebook_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="codebook.qdc")
def export_qdc_cmd(codebook, output):
    """Write the codebook as a REFI-QDA codebook (.qdc) for NVivo, ATLAS.ti, MAXQDA, QualCoder."""
    from .qdpx import export_qdc

    out = _suffix(output, (".qdc",))
    book = _codebook(codebook)
    export_qdc(book, out)
    click.echo(f"{len(book)} codes -> {out}")


@click.command("export-qdpx")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--model", "model_dir", default=str(DEFAULT_MODEL), show_default="models/default",
              type=click.Path(file_okay=False), help="The model that classified OUTDIR (its codebook is exported).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="results.qdpx")
@click.option("--redact", is_flag=True, help="Replace names, places, organisations, contact details and identifiers in the texts; named speakers become 'Speaker N'.")
def export_qdpx_cmd(outdir, model_dir, output, redact):
    """Write a classify output folder as a REFI-QDA project (.qdpx) to review in a QDA tool.

    Each document becomes a source, each coded excerpt a selection with one
    coding per code (user "discourse model", probability in a note), and each
    speaker a case with role and trust.
    """
    from .codebook import codebook_from_dict
    from .model import MANIFEST_FILE, read_model_manifest
    from .pipeline import check_same_model, read_run
    from .qdpx import export_qdpx

    out = _suffix(output, (".qdpx",))
    if not (Path(outdir) / "predictions.parquet").is_file():
        raise DiscourseError("no predictions.parquet: give the folder `discourse classify -o` wrote", outdir)
    manifest = read_model_manifest(model_dir)
    if not isinstance(manifest.get("codebook"), dict):
        raise DiscourseError(f"{MANIFEST_FILE} has no codebook", model_dir)
    book = codebook_from_dict(manifest["codebook"], Path(model_dir) / MANIFEST_FILE)
    check_same_model(read_run(outdir), model_dir, outdir)  # its name and codebook go into the project
    redactor = None
    if redact:
        import pandas as pd

        from .redact import Redactor

        turns = Path(outdir) / "turns.parquet"
        names = pd.read_parquet(turns, columns=["speaker"])["speaker"].unique() if turns.exists() else []
        redactor = Redactor(names=names)
    counts = export_qdpx(outdir, book, out, model_name=Path(model_dir).name, redactor=redactor)
    click.echo(
        f"{counts['documents']} documents, {counts['selections']} coded excerpts, {counts['codings']} codings, "
        f"{counts['cases']} speaker cases -> {out}"
    )


EXCHANGE_COMMANDS = (import_qdpx_cmd, import_qdc_cmd, export_qdc_cmd, export_qdpx_cmd)


def add_exchange_commands(group: click.Group) -> click.Group:
    """Add the REFI-QDA exchange commands to ``group`` (the main `discourse` group)."""
    for cmd in EXCHANGE_COMMANDS:
        group.add_command(cmd)
    return group
