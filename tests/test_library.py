"""README's "From Python (a notebook)" example runs as written, and returns what the README says it does."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    """The Python block between the README's library-example markers."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- library-example:start -->\s*```python\n(.*?)```\s*<!-- library-example:end -->", text, re.S)
    assert m, "README.md has no library example between <!-- library-example:start/end --> markers"
    return m.group(1)


@pytest.mark.slow
def test_readme_library_example_runs(demo_study, tmp_path, monkeypatch):
    # a project folder like this one, whose demo study holds three documents
    project = demo_study(["A01", "B08", "C06"], name="project/corpora/demo").parent.parent
    (project / "models").symlink_to(ROOT / "models", target_is_directory=True)
    monkeypatch.chdir(project)

    ns: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), ns)

    model, P = ns["model"], ns["P"]
    assert isinstance(P, np.ndarray) and P.shape == (1, len(model.codes))
    assert model.predict(["We answer to our customers."]) == [["consumer"]]

    study, excerpts, pred, stats, by_role = ns["study"], ns["excerpts"], ns["pred"], ns["stats"], ns["by_role"]
    assert sorted(d.doc_id for d in study.documents) == ["A01", "B08", "C06"] and study.skipped == []
    assert isinstance(excerpts, pd.DataFrame) and len(excerpts) > 0
    assert {"excerpt_id", "doc_id", "speaker", "role", "text", "start", "end"} <= set(excerpts.columns)
    assert isinstance(pred, pd.DataFrame) and list(pred["excerpt_id"]) == list(excerpts["excerpt_id"])
    assert {f"p_{c}" for c in model.codes} | {"codes", "confidence"} <= set(pred.columns)
    assert stats["classified"] == 3 and (project / "work").is_dir()
    assert isinstance(by_role, pd.DataFrame) and set(by_role["code"]) == set(model.codes)
    assert {"group", "prevalence", "ci_low", "ci_high", "p_value"} <= set(by_role.columns)
    assert "interviewer" not in set(by_role["group"])

    # "so a second call is quick": every document is reused from work/
    _, again = ns["classify_study"](study, model, ns["model_fingerprint"]("models/default"), ns["load_pipeline"], "work")
    assert again["reused"] == 3 and again["classified"] == 0
