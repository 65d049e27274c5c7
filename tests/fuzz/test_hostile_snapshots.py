"""The demo snapshot, mutated by Hypothesis (tests/fuzz/demo_mutations.py), through every command that reads a
source: no traceback, a message naming the file or object, and memory bounded — measured with `resource` on the
process that ran them all."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_RSS_MB = 1024  # the demo reads in ~150 MB; a 5 MB string or 200,000-item list must not multiply that


def test_mutated_demo_snapshots_end_cleanly_in_bounded_memory(tmp_path) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    env = os.environ | {"PYTHONPATH": str(ROOT), "KUBECONFIG": "/nonexistent", "MESHSTEP_ACTOR": "fuzz"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz" / "demo_mutations.py"), "10"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak >= before and peak / 1024 < MAX_RSS_MB, f"peak RSS {peak / 1024:.0f} MB"
