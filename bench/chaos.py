"""Chaos: the demo sweep with one trial worker SIGKILLed every 30 s, against the same sweep undisturbed.

Both arms run `transfer-sweep run sweeps/demo.yaml` on a private local Ray into their own store, one
after the other. In the chaos arm a thread SIGKILLs, every --every seconds, the process of one
running attempt (a Ray trial worker, found through the attempt records the trainable writes; Ray's
own daemons are never touched). Printed last: the kills survived, whether the chaos run finished
with no manual step, whether its rows are bitwise equal to the undisturbed run's (every column but
the wall times), and the wall-time ratio chaos / undisturbed (target <= 1.5) as the RATIO line.

    python bench/chaos.py                   # --every 30: ~2 x 6 min on 2 cores
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
from orchestrator.execution import TrialState, trial_states  # noqa: E402
from orchestrator.spec import Plan, load_spec, make_plan  # noqa: E402
from sweepcore.records import read_attempts, read_results  # noqa: E402
from sweepcore.store import open_store  # noqa: E402


def run(store: Path, log: Path, kill_every: float | None, plan: Plan) -> tuple[int, float, int]:
    """(exit code, wall seconds, kills) of one `transfer-sweep run` of the demo."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", "sweeps/demo.yaml", "--store",
                                 str(store)], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    kills = 0
    stop = threading.Event()

    def chaos() -> None:
        nonlocal kills
        rng = random.Random(0)
        while not stop.wait(kill_every or 0):
            target = running_attempt(store, plan, rng)
            if target is not None:
                try:
                    os.kill(target, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
    thread = threading.Thread(target=chaos, daemon=True)
    if kill_every:
        thread.start()
    code = proc.wait()
    stop.set()
    return code, time.monotonic() - started, kills


def running_attempt(store_dir: Path, plan: Plan, rng: random.Random) -> int | None:
    """The pid of one attempt that is alive now (running as `status` sees it, process exists), or None."""
    if not store_dir.exists():
        return None
    store = open_store(str(store_dir), check=False)
    alive = []
    for state in trial_states(plan, store):
        attempts = read_attempts(store, state.key) if state.state is TrialState.RUNNING else []
        if attempts and os.path.exists(f"/proc/{attempts[-1]['pid']}"):
            alive.append(int(attempts[-1]["pid"]))
    return rng.choice(alive) if alive else None


def rows(store: Path) -> list[dict]:
    table = read_results(open_store(str(store))).to_pylist()
    return [{k: v for k, v in r.items() if k not in ("wall_seconds", "finished_at")} for r in table]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=30.0, help="seconds between kills (default 30)")
    args = parser.parse_args()
    plan = make_plan(load_spec(ROOT / "sweeps" / "demo.yaml"))
    keys = [t.key for t in plan.trials]
    work = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    print(f"# {cpu_name()}, {os.cpu_count()} cores; demo sweep, {len(keys)} trainings; work dir {work}", flush=True)
    calm_code, calm_wall, _ = run(work / "calm", work / "calm.log", None, plan)
    print(f"undisturbed: exit {calm_code}, wall {calm_wall:.0f} s", flush=True)
    code, wall, kills = run(work / "chaos", work / "chaos.log", args.every, plan)
    print(f"chaos (a SIGKILL every {args.every:.0f} s): exit {code}, wall {wall:.0f} s, {kills} kills", flush=True)
    complete = len(rows(work / "chaos")) == len(keys)
    equal = sorted(rows(work / "chaos"), key=lambda r: r["key"]) == sorted(rows(work / "calm"), key=lambda r: r["key"])
    print(f"kills survived: {kills}; completed with no manual step: {code == 0 and complete}; "
          f"rows bitwise equal to undisturbed: {equal}")
    print(f"RATIO chaos/undisturbed={wall / calm_wall:.2f} (target <= 1.5) kills={kills} "
          f"complete={code == 0 and complete} bitwise_equal={equal}")
    return 0 if code == 0 and complete and equal else 1


if __name__ == "__main__":
    sys.exit(main())
