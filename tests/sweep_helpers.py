"""Helpers for the integration tests: tiny real specs, the CLI as a subprocess, store inspection."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "orchestrator.cli"]

# Real training on the real data, but a tiny net and few iterations: a trial takes a few seconds.
TINY_MODEL = {"arch": "small", "widths": [8, 8, 8, 8, 8], "fc_width": 32}
TINY_TRAIN = {"iterations": 12, "batch_size": 32, "lr": 0.05, "eval_every": 4, "checkpoint_every": 4,
              "top_k": 2, "warmup_fraction": 0.1}


def tiny_spec(tmp_path: Path, name: str, **over) -> Path:
    """Write a tiny spec to tmp_path/<name>.yaml and return its path."""
    raw = {"name": name, "dataset": "fashion-animals", "splits": ["random:0"],
           "treatments": ["base", "selffer", "transfer"], "layers": [2], "directions": ["A->B"],
           "model": dict(TINY_MODEL), "train": dict(TINY_TRAIN), "resources": {"cpus": 1}, "retries": 2}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def cli(*args, env=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def cli_background(*args, env=None, log: Path) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen([*CLI, *args], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for(predicate, timeout: float, what: str, every: float = 0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def env_with(head, extra: dict | None = None) -> dict:
    env = head.client_env()
    env.update(extra or {})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def result_files(store_dir: Path) -> list[Path]:
    return sorted((store_dir / "results").glob("*.parquet"))


def attempt_count(store, key: str) -> int:
    from sweepcore.records import read_attempts
    return len(read_attempts(store, key))


def assert_one_failed_shard(proc: subprocess.CompletedProcess, total: int, dataset: str) -> None:
    """`data prepare` with shard 1 of train failing: exit 1, its FAILED line, and one last line saying
    how many failed and that the others are committed (the one failure policy of both sources)."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"transfer-sweep: error: 1 of {total} shards of {dataset} failed (first: train shard 1: "
                           "StoreError: "), proc.stderr[-3000:]
    assert last.endswith("the others are committed: run the same command again to finish"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "FAILED train shard 1: StoreError: " in proc.stderr
