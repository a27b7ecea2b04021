"""The cost estimate as `plan` prints it, the CLI as a process (the estimate itself:
tests/unit/test_estimate.py)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plan_prints_the_estimate(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", "sweeps/demo.yaml", "--store",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "estimated CPU time: " in proc.stdout and "for 23 training(s) (0 already committed)" in proc.stdout
