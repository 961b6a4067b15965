import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def nlp():
    """The real spaCy pipeline (parser sentence boundaries), loaded once."""
    from discourse.segment import load_pipeline

    return load_pipeline("parser")
