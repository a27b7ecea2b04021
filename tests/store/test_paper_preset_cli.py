"""sweeps/paper.yaml through `plan --format json`, the CLI as a process: the counts docs/paper-mapping.md
documents (the trials themselves: tests/unit/test_paper_preset.py)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "sweeps" / "paper.yaml"


def test_plan_cli_counts_match_the_documented_mapping():
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(PRESET), "--format", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # no cost table for CaffeNet: the estimate says so rather than guess
    assert out.pop("estimate")["note"] == "per-step costs are measured for the small network on CPU only"
    assert out == {
        "sweep": "paper", "total": 136, "bases": 11,
        "by_treatment": {"base": 11, "selffer": 28, "selffer+": 10, "transfer": 70, "transfer+": 10, "random": 7},
        "by_split": {"all": 8, "natman": 16, "random:0": 37, "random:1": 29, "random:2": 23, "random:3": 23},
        "by_n": {"1": 17, "2": 18, "3": 19, "4": 18, "5": 18, "6": 18, "7": 17},
    }
