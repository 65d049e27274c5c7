"""`meshstep analyze` against istioctl analyze's own 103 test cases (../shared/tools/istio_conformance.py).

Fails when the score drops below what meshstep reaches today; raise the floors when checks improve."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT.parent / "shared" / "tools" / "istio_conformance.py"
CASES_PASSING, PRECISION, RECALL = 103, 1.0, 1.0


@pytest.mark.skipif(not TOOL.exists(), reason="istio reference data and conformance tool not present")
def test_istioctl_conformance_does_not_drop(tmp_path):
    rows_file = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(TOOL), "--cmd", f"{sys.executable} -m app.cli", "--jobs", "8", "--json", str(rows_file)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    score = proc.stdout.strip().splitlines()[-1]
    m = re.search(r"(\d+)/(\d+) cases pass; messages precision ([\d.]+) recall ([\d.]+)", score)
    assert m, f"no score line in the tool's output: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    passed, precision, recall = int(m[1]), float(m[3]), float(m[4])
    crashed = [r["case"] for r in json.loads(rows_file.read_text()) if r["error"]]
    assert not crashed, f"analyze failed to run on: {crashed}"
    assert passed >= CASES_PASSING and precision >= PRECISION and recall >= RECALL, score
