"""scripts/learning_curve.py: the draws per batch and the page (no encoder: measuring is the script's run)."""

import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("learning_curve", ROOT / "scripts" / "learning_curve.py")
lc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lc)


def test_a_share_is_drawn_from_every_batch_and_only_from_the_rows_given():
    batches = np.array(["a"] * 8 + ["b"] * 4 + ["c"] * 6)
    rows = np.arange(14)  # batch c's last rows are held out
    got = lc.subsample(batches, rows, 0.5, seed=0)
    assert [int(np.sum(batches[got] == b)) for b in "abc"] == [4, 2, 1]
    assert set(got) <= set(rows) and list(got) == sorted(got)
    assert list(lc.subsample(batches, rows, 0.5, seed=0)) == list(got)  # seeded
    assert list(lc.subsample(batches, rows, 1.0, seed=3)) == list(rows)


def test_the_page_is_written_from_the_recorded_runs():
    record = json.loads((ROOT / "docs" / "learning-curve.json").read_text())
    codes = list(record["runs"][0]["kappa"])
    page = lc.render(record["runs"], codes, 2346, 9, record["training_excerpts_per_fold"], 3)
    assert page == (ROOT / "docs" / "learning-curve.md").read_text(encoding="utf-8")
    full = next(r for r in record["runs"] if r["fraction"] == 1.0)
    assert f"| 100% | {round(np.mean(record['training_excerpts_per_fold']))} | {full['kappa']['empowered']:.3f} |" in page
