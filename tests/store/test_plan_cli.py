"""The plan as the CLI prints it (JSON and table), and an orchestrator that never imports torch, each in
a fresh interpreter (the plan itself: tests/unit/test_plan.py)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plan_cli_json():
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", "sweeps/standard.yaml",
                           "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["total"] == 288


def test_plan_cli_table():
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", "sweeps/demo.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sweep demo: 23 trainings, 5 distinct bases" in proc.stdout
    assert "transfer+" in proc.stdout


def test_orchestrator_never_imports_torch():
    # every module of the driver, in its subpackages too (`__main__` would run the CLI)
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "orchestrator").rglob("*.py")
                     if p.stem != "__main__")
    assert len(modules) > 40 and "orchestrator.execution.trainable" in modules
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; " \
           "print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr
