import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def nlp():
    """The real spaCy pipeline (parser sentence boundaries), loaded once."""
    from discourse.segment import load_pipeline

    return load_pipeline("parser")


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
