"""One real Ray head for the whole test run, started with `ray start --head --block`, stopped by PID.

`ray stop` would end every Ray on the machine, so the fixture owns its processes: the blocking
`ray start` process (which tears its children down on SIGTERM) and, as a safety net, any process
whose command line names this run's private temp dir.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.execution.session import PRELOAD_MODULES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayHead:
    """A running head: its GCS address, dashboard URL and the env a client needs (token auth)."""

    address: str
    dashboard_url: str
    temp_dir: str
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    metrics_port: int = 0  # the node's Prometheus export (http://127.0.0.1:<port>/metrics)

    def client_env(self) -> dict:
        return {**os.environ, **self.env}


def start_head(num_cpus: int = 2, env: dict | None = None) -> RayHead:
    # AF_UNIX socket paths are limited to 107 bytes: keep the temp dir short.
    temp_dir = tempfile.mkdtemp(prefix="ts-", dir="/tmp")
    gcs, dash, metrics = free_port(), free_port(), free_port()
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_preload_python_modules": ",".join(PRELOAD_MODULES),  # as the Docker image sets it
           "RAY_USAGE_STATS_ENABLED": "0", "TRANSFER_SWEEP_RAY_TMP": temp_dir, **(env or {})}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    cmd = [ray_bin, "start", "--head", "--block", f"--num-cpus={num_cpus}", "--num-gpus=0",
           f"--port={gcs}", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", "--include-dashboard=true", f"--temp-dir={temp_dir}",
           f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
           f"--metrics-export-port={metrics}", "--disable-usage-stats", "--object-store-memory=400000000"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ready = threading.Event()
    lines: list[str] = []

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120):
        stop_head(RayHead("", "", temp_dir, env, proc))
        raise RuntimeError("ray start --head did not come up:\n" + "".join(lines[-40:]))
    return RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", temp_dir, env, proc, metrics)


def pids_using(temp_dir: str) -> list[int]:
    """PIDs of this machine's processes that belong to the Ray whose temp dir is `temp_dir`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{entry}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline or f"TRANSFER_SWEEP_RAY_TMP={temp_dir}" in environ:
            pids.append(int(entry))
    return pids


def stop_head(head: RayHead) -> None:
    """SIGTERM the blocking `ray start`, then SIGKILL whatever of this run's Ray is left."""
    if head.proc and head.proc.poll() is None:
        head.proc.send_signal(signal.SIGTERM)
        try:
            head.proc.wait(30)
        except subprocess.TimeoutExpired:
            head.proc.kill()
    deadline = time.time() + 10
    while time.time() < deadline:
        left = pids_using(head.temp_dir)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    subprocess.run(["rm", "-rf", head.temp_dir], check=False)
