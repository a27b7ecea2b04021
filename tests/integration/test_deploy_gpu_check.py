"""bench/gpu_check.sh run end to end on the CPU (DRY_RUN=1): real preparation, the data path, its
3-trial demo sweep on a local Ray, and the Ray-free loop over a slice of dip-gpu.yaml (the offline
checks of the script: tests/unit/test_deploy.py and tests/store/test_deploy_tools.py)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPU_CHECK = ROOT / "bench" / "gpu_check.sh"


def test_gpu_check_dry_run_runs_every_step_on_the_cpu(tmp_path):
    """DRY_RUN=1: the same script on the CPU at toy sizes (with its 3-trial sweep): ~2 min here."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(out), "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    for name in ("RAY_ADDRESS", "SKIP_SWEEP", "BUDGET_S", "KEEP_WORK"):
        env.pop(name, None)
    proc = subprocess.run(["bash", str(GPU_CHECK)], env=env, capture_output=True, text=True, timeout=600)
    log = (out / "gpu_check.log").read_text()
    assert proc.returncode == 0, log[-6000:]
    assert proc.stdout == log  # tee had written everything when the script exited
    assert "=== summary:" in log and "failed steps: 0 ===" in log, log[-3000:]
    for name in ("prepare jpeg shards", "prepare raw shards", "data path + CaffeNet", "demo sweep (gpus=0)",
                 "sweep status", "export dip-gpu trials", "one converged trial (Ray-free)",
                 "dip-gpu slice random:0,0 (Ray-free, 2 at once)"):
        assert f"--- {name}: ok" in log, name
    assert "nvidia-smi: skipped (DRY_RUN" in log and "3/3 committed" in log
    # the Ray-free loop: one trial timed, then the unit's 18 trainings, the first one read back
    assert "loop dip-gpu: 1/1 committed (1 trained now, 0 before)" in log
    assert "loop dip-gpu: 18 trials, 1 already committed, 17 to run, 2 at once" in log
    assert "loop dip-gpu: 18/18 committed (17 trained now, 1 before)" in log
    figure = r" +\d+ images/s  = \d+\.\d\dx of 15k"
    assert re.search(rf"^data path jpeg \(pillow\){figure}", log, re.M), log[-3000:]
    assert re.search(rf"^data path raw \(raw\){figure}", log, re.M)
    for arm in ("fp32 NCHW", "fp32 channels_last", "bf16 channels_last"):
        assert re.search(rf"^{arm}{figure}", log, re.M), arm
    assert re.search(rf"^bf16 channels_last compile(?:{figure}| +FAILED: \S)", log, re.M)
    assert re.search(r"^RATIO best_full_path=\d+\.\d\d of 15000 img/s \(.*decoder pillow\)$", log, re.M)
    # the figures again at the end, after the sweep's output
    assert log.count("RATIO best_full_path=") == 2
    # nothing left behind: its folders under TMPDIR and its scratch (Ray's temp dir) are gone
    scratch = re.search(r", scratch (\S+?)[,\n]", log).group(1)
    assert not Path(scratch).exists() and list(tmp.iterdir()) == []
