import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def nlp():
    """The real spaCy pipeline (parser sentence boundaries), loaded once."""
    from discourse.segment import load_pipeline

    return load_pipeline("parser")


@pytest.fixture(scope="session")
def book():
    """The bundled codebook (corpora/codebook.yaml)."""
    from discourse.codebook import default_codebook_path, load_codebook

    return load_codebook(default_codebook_path())


@pytest.fixture(scope="session", autouse=True)
def private_embedding_cache(tmp_path_factory):
    """Tests never touch the user's embedding cache."""
    old = os.environ.get("DISCOURSE_CACHE")
    os.environ["DISCOURSE_CACHE"] = str(tmp_path_factory.mktemp("embedding-cache"))
    yield
    if old is None:
        os.environ.pop("DISCOURSE_CACHE", None)
    else:
        os.environ["DISCOURSE_CACHE"] = old


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from discourse.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def demo_study(tmp_path):
    """Copy some demo documents, with their manifest and speaker rows, into a new study folder."""
    import shutil
    from pathlib import Path

    import pandas as pd

    demo = Path(__file__).resolve().parent.parent / "corpora" / "demo"

    def make(docs, name="study"):
        folder = tmp_path / name
        (folder / "transcripts").mkdir(parents=True)
        man = pd.read_csv(demo / "manifest.csv", dtype=str)
        man = man[man.doc_id.isin(docs)]
        for f in man.file:
            shutil.copy(demo / f, folder / f)
        man.to_csv(folder / "manifest.csv", index=False)
        spk = pd.read_csv(demo / "speakers.csv", dtype=str)
        spk[spk.doc_id.isin(docs)].to_csv(folder / "speakers.csv", index=False)
        return folder

    return make


def _linked_minilm(dest, replace: dict[str, bytes] | None = None):
    """A folder of symbolic links to the packaged MiniLM's files, with the files in ``replace`` written instead."""
    from discourse.encoders import resolve_encoder

    _, src = resolve_encoder(None)
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if f.is_dir():
            (dest / rel).mkdir(exist_ok=True)
        elif str(rel) in (replace or {}):
            (dest / rel).write_bytes(replace[str(rel)])
        else:
            (dest / rel).symlink_to(f)
    return dest


@pytest.fixture(scope="session")
def linked_minilm():
    """``linked_minilm(dest, replace=None)``: a local encoder folder that is MiniLM but for the files replaced."""
    return _linked_minilm


@pytest.fixture
def break_segment(monkeypatch):
    """``break_segment(doc_id, exc)``: segmenting any turns of ``doc_id`` raises ``exc`` (others segment as ever)."""
    import discourse.pipeline as pipeline

    real = pipeline.segment

    def install(doc_id: str, exc: Exception) -> None:
        def broken(turns, nlp, **kw):
            if (turns["doc_id"] == doc_id).any():
                raise exc
            return real(turns, nlp, **kw)

        monkeypatch.setattr(pipeline, "segment", broken)

    return install
