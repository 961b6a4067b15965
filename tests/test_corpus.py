"""The corpus is valid, its tables are built from its sources, and its targets hold."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_corpus_stats_validates_and_meets_targets(tmp_path):
    out = tmp_path / "stats.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "corpus_stats.py"), "--json", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "FAIL" not in r.stdout and "PROBLEM" not in r.stdout
    import json

    stats = json.loads(out.read_text())["stats"]
    assert stats["train"]["excerpts"] >= 1500 and stats["test"]["excerpts"] >= 250
    assert min(stats["train"]["per_code"].values()) >= 130


@pytest.mark.slow
def test_corpus_tables_are_up_to_date_with_their_sources():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_corpus.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
