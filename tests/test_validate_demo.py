"""The pipeline recovers the demo study's designed answer (scripts/validate_demo.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_design_is_recovered(tmp_path):
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "validate_demo.py"), "--out", str(tmp_path / "run"),
                        "--json", str(out)], capture_output=True, text=True)
    assert out.exists(), r.stderr[-3000:]
    res = json.loads(out.read_text())
    for by in ("role", "trust"):
        g = res["groupings"][by]
        assert g["mae"] <= 0.05, (by, g["mae"])
        reversed_ = [c for c in g["checks"] if not c["right_direction"]]
        assert not reversed_, reversed_
    assert r.returncode == 0, r.stdout[-2000:]
