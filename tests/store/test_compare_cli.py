"""`transfer-sweep compare` as a process: a missing results file is one line and exit 2 (the comparison
itself: tests/unit/test_compare.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "results" / "converged" / "results.parquet"


def test_compare_of_a_missing_file_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "compare", str(PUBLISHED),
                           str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"transfer-sweep: error: {tmp_path / 'nope.parquet'}: no such results file"
