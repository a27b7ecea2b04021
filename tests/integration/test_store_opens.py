"""One store per command: `run`, `resume`, `status`, `report` and `compare` each open the sweep's store
exactly once in the driver (orchestrator/sources.py builds the command's Sweep), whatever they read."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sweep_helpers import ROOT, env_with, tiny_spec

COUNTER = Path(__file__).resolve().parents[1] / "store_open_counter.py"


def opens(tmp_path: Path, env: dict, *args: str) -> tuple[int, subprocess.CompletedProcess]:
    """(stores the command opened in its own process, the finished process)."""
    count_file = tmp_path / f"opens-{args[0]}.txt"
    count_file.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(COUNTER), str(count_file), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0, proc


def test_each_command_opens_the_store_once(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "opens")
    store = str(tmp_path / "store")
    env = env_with(ray_head)
    counted = {
        "run": opens(tmp_path, env, "run", str(spec_path), "--store", store, "--address", ray_head.address),
        "resume": opens(tmp_path, env, "resume", "opens", "--store", store, "--address", ray_head.address),
        "status": opens(tmp_path, env, "status", "opens", "--store", store),
        "report": opens(tmp_path, env, "report", "opens", "--store", store),
        "compare": opens(tmp_path, env, "compare", "opens", "opens", "--store", store,
                         "--out", str(tmp_path / "compare")),
    }
    assert "4/4 committed (4 trained now, 0 before)" in counted["run"][1].stderr
    assert "4/4 committed (0 trained now, 4 before)" in counted["resume"][1].stderr
    assert {command: n for command, (n, _) in counted.items()} == dict.fromkeys(counted, 1)
