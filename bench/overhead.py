"""Orchestration overhead: the same real trainings by a bare process pool vs by `transfer-sweep run`.

Arm A (bare): a Python subprocess whose ProcessPoolExecutor, with as many processes as the sweep runs
trials at once, calls workers.trial.run_trial directly on a fresh local store, submitting each
dependent the moment its base returns (the same greedy, no-barrier order the DependencySearcher uses).
Arm B (sweep): `python -m orchestrator.cli run` in a subprocess on a fresh store: it starts a local
Ray (dashboard included), runs one Tune experiment and shuts Ray down; its wall time is what a user
pays. Arms run A B B A (with --repeats 2) so a drift in the machine's load hits both alike; each arm
runs in its own session, as a user's terminal command would.

Printed: wall per run, Ray start-up (until the CLI prints 'Ray dashboard:'), the trainings' span
(first training start to last result commit, from the store), the CPU seconds of every process of
the arm by kind (sampled from /proc), then ratios of medians. On a shared machine the kernel hands
the two arms different CPU shares (wall times then differ by up to 2x with identical work): the CPU
ratio is the load-independent measure of what orchestration costs. The last line:
    RATIO overhead=<wall B / wall A> (target <= 1.05) excluding_ray_startup=.. span=.. cpu=<CPU B / A>
Usage: python bench/overhead.py [--iterations 400] [--repeats 2]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.execution.schedule import tune_storage  # noqa: E402
from orchestrator.spec import Plan, SweepSpec, load_spec, make_plan  # noqa: E402
from sweepcore.records import committed_keys, read_attempts, read_result  # noqa: E402
from sweepcore.settings import TrialSettings  # noqa: E402
from sweepcore.store import open_store  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from ray_cluster import pids_using  # noqa: E402  (the test suite's way to find one Ray's processes)

PARALLEL = 2  # trials at once in both arms (the CLI's Ray gets max_concurrent=2)


def bench_spec(name: str, iterations: int, layers=(2, 4, 6), treatments=("base", "selffer", "transfer"),
               extra: tuple[str, ...] = ()) -> SweepSpec:
    """sweeps/standard.yaml (model, solver, eval/checkpoint intervals) cut to one split, one direction,
    a few layers and `iterations` SGD steps: 2 bases + selffer and transfer at each layer."""
    overrides = (f"name={name}", "splits=[random:0]", f"treatments=[{','.join(treatments)}]",
                 f"layers=[{','.join(map(str, layers))}]", "directions=[A->B]", "train.epochs=null",
                 f"train.iterations={iterations}", f"max_concurrent={PARALLEL}", "retries=0", *extra)
    return load_spec(ROOT / "sweeps" / "standard.yaml", overrides)


def write_spec(spec: SweepSpec, folder: Path) -> Path:
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return path


# --- arm A: bare process pool ----------------------------------------------------------------------
def _pool_trial(settings: TrialSettings, store_uri: str) -> dict:
    """One training in a pool process: its start and end (epoch seconds), process and phases."""
    start = time.time()
    from workers.trial import run_trial  # noqa: PLC0415 (imported in the worker, as Ray workers do)

    timings = {"import": time.time() - start}
    run_trial(settings, open_store(store_uri), timings=timings)
    return {"key": settings.key, "start": start, "end": time.time(), "slot": os.getpid(),
            **{f"s_{k.replace(' ', '_')}": v for k, v in timings.items()}}


def run_bare(plan: Plan, store_uri: str) -> dict:
    """Run `plan` with a pool of PARALLEL fresh processes, dependents released as their base returns."""
    waiting = list(plan.trials)
    done: set[str] = set()
    trials: list[dict] = []
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, like Ray's worker processes
    with cf.ProcessPoolExecutor(PARALLEL, mp_context=ctx) as pool:
        running = set()

        def release():
            nonlocal waiting
            ready = [t for t in waiting if t.base_key is None or t.base_key in done]
            waiting = [t for t in waiting if t not in ready]
            running.update(pool.submit(_pool_trial, t.settings, store_uri) for t in ready)

        release()
        while running:
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                running.discard(fut)
                trials.append(fut.result())
                done.add(trials[-1]["key"])
            release()
    store = open_store(store_uri)  # the end of the span as arm B's: the newest result row's finished_at
    last = max(read_result(store, t.key)["finished_at"].timestamp() for t in plan.trials)
    return {"first": min(t["start"] for t in trials), "last": last, "trials": trials}


def run_bare_cli(spec_path: Path, store_uri: str) -> dict:
    """Arm A as a user would run it: a fresh Python process running the pool."""
    out = run_session([sys.executable, __file__, "--bare", str(spec_path), store_uri],
                      {**os.environ, "PYTHONPATH": str(ROOT)})
    line = next((x for x in out["output"] if x.startswith("BARE ")), None)
    if out["rc"] != 0 or line is None:
        raise RuntimeError(f"bare arm failed (exit {out['rc']}):\n" + "\n".join(out["output"][-30:]))
    r = json.loads(line[5:])
    return {"wall": out["wall"], "startup": r["first"] - out["t0"], "span": r["last"] - r["first"],
            "cpu": out["cpu"], "procs": out["training_processes"], "trials": r["trials"]}


# --- both arms: a subprocess in its own session, timed, its CPU use sampled -------------------------
TRAINING = "trainings"


def _classify(cmdline: str) -> str:
    """What a process of an arm is, from its command line (Ray workers retitle themselves 'ray::...')."""
    if cmdline.startswith("ray::"):
        if re.match(r"ray::.* \[[0-9a-f]+\]", cmdline):  # an attempt: its task is named 'NAME [KEY]'
            return TRAINING
        if "TransferTrial" in cmdline:
            return "trial slots (Tune actors)"
        if "DashboardAgent" in cmdline or "RuntimeEnvAgent" in cmdline:
            return "dashboard + agents"
        return "idle Ray workers"
    rules = (("--bare", "bench pool parent"), ("multiprocessing.spawn", TRAINING),
             ("orchestrator.cli", "CLI driver + Tune"), ("/raylet/raylet", "raylet"), ("gcs_server", "GCS"),
             ("dashboard", "dashboard + agents"), ("default_worker.py", "idle Ray workers"))
    return next((label for needle, label in rules if needle in cmdline), "other processes")


def _session_cpu(sid: int, seen: dict[int, tuple[str, float]]) -> None:
    """Record the CPU seconds (user + system) of every process in session `sid` (cumulative per pid;
    a process keeps the kind it was first seen as, unless it later runs a training)."""
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) != sid:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            label = _classify(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            continue
        first = seen.get(int(entry), (label, 0.0))[0]
        seen[int(entry)] = (label if label == TRAINING else first, cpu)  # a process keeps its first kind


def run_session(cmd: list[str], env: dict, timeout: float = 540) -> dict:
    """Run `cmd` in a new session (as a user's terminal would: the kernel shares CPU between sessions);
    return exit code, start/end time, timestamped output and the CPU seconds of its processes by kind."""
    lines: list[tuple[float, str]] = []
    seen: dict[int, tuple[str, float]] = {}
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)

    def pump():
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip()))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = t0 + timeout
    while proc.poll() is None and time.time() < deadline:
        _session_cpu(proc.pid, seen)  # the session id is the leader's pid
        time.sleep(0.5)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session: the command and what it started
    rc = proc.wait()
    t1 = time.time()
    _session_cpu(proc.pid, seen)  # whatever outlived the leader
    reader.join(5)
    cpu: dict[str, float] = {}
    for label, seconds in seen.values():
        cpu[label] = cpu.get(label, 0.0) + seconds
    return {"rc": rc, "t0": t0, "wall": t1 - t0, "end": t1, "lines": lines,
            "output": [line for _, line in lines], "cpu": cpu,
            "training_processes": sum(1 for label, _ in seen.values() if label == TRAINING)}


# --- arm B: the CLI --------------------------------------------------------------------------------
def ray_env(temp_dir: str) -> dict:
    """Env for a CLI subprocess: its local Ray lives in `temp_dir` (short: AF_UNIX path limit)."""
    env = {**os.environ, "TRANSFER_SWEEP_RAY_TMP": temp_dir, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    return env


def kill_leftovers(temp_dir: str) -> int:
    """SIGKILL what is left of the Ray started with `temp_dir` (normally nothing); remove the dir."""
    killed = 0
    for _ in range(20):
        left = pids_using(temp_dir)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.25)
    shutil.rmtree(temp_dir, ignore_errors=True)
    return killed


def run_cli(args: list[str], timeout: float = 540) -> dict:
    """Run `python -m orchestrator.cli ARGS` with a private Ray temp dir; time it and its phases."""
    temp_dir = tempfile.mkdtemp(prefix="tsb-", dir="/tmp")
    try:
        out = run_session([sys.executable, "-m", "orchestrator.cli", *args], ray_env(temp_dir), timeout)
    finally:
        out_killed = kill_leftovers(temp_dir)
    lines, t0 = out["lines"], out["t0"]
    ray_up = next((t for t, line in lines if line.startswith("Ray dashboard:")), None)
    summary = next((t for t, line in lines if " committed (" in line), None)  # run_plan has returned
    return {**out, "ray_up": (ray_up - t0) if ray_up else None, "summary": summary,
            "leftovers_killed": out_killed}


def store_times(store_uri: str, plan: Plan) -> tuple[float, float]:
    """(first training start, last result commit) as epoch seconds, from attempt records and rows."""
    store = open_store(store_uri)
    starts = [dt.datetime.fromisoformat(a["at"]).timestamp()
              for t in plan.trials for a in read_attempts(store, t.key)]
    ends = [read_result(store, t.key)["finished_at"].timestamp() for t in plan.trials]
    return min(starts), max(ends)


def tune_trials(spec: SweepSpec, store_uri: str) -> list[dict]:
    """Each trial's last Tune result of arm B's run on `store_uri` (its phases, as the trainable reports
    them: trainable.py), from Tune's result.json files; the folder is removed after reading."""
    folder = Path(tune_storage(spec.model_copy(update={"store": store_uri})))
    trials = []
    for path in folder.glob("*/*/result.json"):
        last = json.loads(path.read_text().strip().splitlines()[-1])
        if last.get("committed"):
            trials.append({**last, "start": last["t_slot_start"], "end": last["t_attempt_end"]})
    shutil.rmtree(folder, ignore_errors=True)
    return trials


def run_sweep(spec_path: Path, spec: SweepSpec, plan: Plan, store_uri: str) -> dict:
    out = run_cli(["run", str(spec_path), "--store", store_uri])
    if out["rc"] != 0:
        raise RuntimeError(f"transfer-sweep run failed (exit {out['rc']}):\n" + "\n".join(out["output"][-30:]))
    first, last = store_times(store_uri, plan)
    return {"wall": out["wall"], "startup": first - out["t0"], "ray_up": out["ray_up"],
            "span": last - first, "shutdown": out["end"] - last, "killed": out["leftovers_killed"],
            "tune_end": (out["summary"] - last) if out["summary"] else float("nan"), "cpu": out["cpu"],
            "procs": out["training_processes"], "trials": tune_trials(spec, store_uri)}


def results_of(store_uri: str, plan: Plan) -> tuple[dict[str, float], float]:
    """(top-1 by key, the trainings' own train() wall seconds summed) of a finished run."""
    store = open_store(store_uri)
    assert committed_keys(store) >= set(plan.by_key()), "a run left trials without a result"
    rows = [read_result(store, t.key) for t in plan.trials]
    return {r["key"]: r["top1_final"] for r in rows}, sum(r["wall_seconds"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400, help="SGD steps per training")
    parser.add_argument("--repeats", type=int, default=2, help="runs per arm, in the order A B B A ...")
    parser.add_argument("--bare", nargs=2, metavar=("SPEC", "STORE"), help=argparse.SUPPRESS)  # arm A's process
    args = parser.parse_args()
    if args.bare:
        print("BARE " + json.dumps(run_bare(make_plan(load_spec(args.bare[0])), args.bare[1])), flush=True)
        return

    spec = bench_spec("overhead", args.iterations)
    plan = make_plan(spec)
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    order = [("A", "B") if i % 2 == 0 else ("B", "A") for i in range(args.repeats)]
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    tops: dict[str, list[dict]] = {"A": [], "B": []}
    print(f"{len(plan)} trainings ({', '.join(t.name for t in plan.trials)}), {args.iterations} SGD steps "
          f"each, {PARALLEL} at a time; load average {os.getloadavg()[0]:.2f}; order "
          f"{' '.join(a for pair in order for a in pair)}", flush=True)
    try:
        spec_path = write_spec(spec, work)
        for i, pair in enumerate(order):
            for arm in pair:
                store_uri = str(work / f"store-{arm}{i}")
                r = run_bare_cli(spec_path, store_uri) if arm == "A" else run_sweep(spec_path, spec, plan, store_uri)
                runs[arm].append(r)
                top1, r["train_wall"] = results_of(store_uri, plan)
                tops[arm].append(top1)
                shutil.rmtree(store_uri, ignore_errors=True)
                extra = (f"  Ray up at {r['ray_up']:.1f} s; after the last commit: run_plan returns "
                         f"{r['tune_end']:.1f} s, CLI exits {r['shutdown']:.1f} s" if arm == "B" else "")
                print(f"run {i + 1} arm {arm}: wall {r['wall']:6.1f} s  first training starts at "
                      f"{r['startup']:5.1f} s  trainings span {r['span']:6.1f} s  "
                      f"CPU {sum(r['cpu'].values()):5.1f} s{extra}  "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    same = all(t == tops["A"][0] for arm in "AB" for t in tops[arm])
    med = {arm: {k: statistics.median(r[k] for r in runs[arm]) for k in ("wall", "startup", "span", "train_wall")}
           for arm in "AB"}
    ray_up = statistics.median(r["ray_up"] for r in runs["B"])
    shutdown = statistics.median(r["shutdown"] for r in runs["B"])
    tune_end = statistics.median(r["tune_end"] for r in runs["B"])
    print()
    print(f"{'median over ' + str(args.repeats) + ' runs':<34}{'A bare pool':>12}{'B transfer-sweep':>18}{'B/A':>8}")
    for label, k in (("wall (what a user waits)", "wall"), ("start -> first training", "startup"),
                     ("first training -> last commit", "span")):
        print(f"{label:<34}{med['A'][k]:>10.1f} s{med['B'][k]:>16.1f} s{med['B'][k] / med['A'][k]:>8.2f}")
    print(f"{'sum of the trainings own train() wall':<34}{med['A']['train_wall']:>10.1f} s"
          f"{med['B']['train_wall']:>16.1f} s{med['B']['train_wall'] / med['A']['train_wall']:>8.2f}")
    idle = {arm: PARALLEL * med[arm]["span"] - med[arm]["train_wall"] for arm in "AB"}
    print(f"{'slot time outside train() in span':<34}{idle['A']:>10.1f} s{idle['B']:>16.1f} s"
          f"   (= {PARALLEL} x span - sum of train() walls: set-up, commits, scheduling gaps)")
    print(f"B fixed costs: Ray start-up (CLI start -> 'Ray dashboard:') {ray_up:.1f} s; Ray up -> first "
          f"training {med['B']['startup'] - ray_up:.1f} s (A: pool start -> first training "
          f"{med['A']['startup']:.1f} s); last commit -> run_plan returns {tune_end:.1f} s -> CLI exit "
          f"{shutdown - tune_end:.1f} s")
    print(f"identical top-1 in every run of both arms: {'yes' if same else 'NO'}")
    cpu = {arm: cpu_by_kind(runs[arm]) for arm in "AB"}
    total = {arm: statistics.median(sum(r["cpu"].values()) for r in runs[arm]) for arm in "AB"}
    print()
    print("CPU seconds by process kind (median; all processes of the arm's session, sampled every 0.5 s):")
    for arm in "AB":
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu[arm].items(), key=lambda kv: -kv[1]))
        procs = sorted({r["procs"] for r in runs[arm]})
        print(f"  {arm}: total {total[arm]:.1f} = {parts}; processes that trained: {procs}")
    print_breakdown(runs)
    after_ray = (med["B"]["wall"] - ray_up) / med["A"]["wall"]
    print(f"RATIO overhead={med['B']['wall'] / med['A']['wall']:.2f} (target <= 1.05) "
          f"excluding_ray_startup={after_ray:.2f} span={med['B']['span'] / med['A']['span']:.2f} "
          f"cpu={total['B'] / total['A']:.2f}")


BREAKDOWN = (  # (label, how one trial's figure is read from its record; None where an arm has no such step)
    ("waiting for a slot after the previous trial", "gap"),
    ("slot -> attempt running (task or process start)", "task_start"),
    ("imports (torch, training code)", "s_import"),
    ("store: is it committed already?", "s_lookup"),
    ("data load (memo, cache or store)", "s_data"),
    ("store: base weights read", "s_base_weights"),
    ("build + transplant", "s_build"),
    ("train() (evaluations, checkpoints included)", "s_train"),
    ("store: commit (weights, curve, row)", "s_commit"),
    ("result reporting (tune.report)", "s_report"),
)


def per_trial(trials: list[dict]) -> list[dict]:
    """Each trial's breakdown figures: its own phases, plus the wait its slot (Tune actor, or pool
    process) had between the previous trial's end and this one's start."""
    out = []
    by_slot: dict[str, list[dict]] = {}
    for t in trials:
        by_slot.setdefault(str(t["slot"]), []).append(t)
    for slot_trials in by_slot.values():
        slot_trials.sort(key=lambda t: t["start"])
        for prev, t in zip([None, *slot_trials], slot_trials):
            figures = {k: t.get(k, 0.0) for _, k in BREAKDOWN if k.startswith("s_")}
            figures["task_start"] = t["t_attempt_start"] - t["t_slot_start"] if "t_slot_start" in t else 0.0
            figures["gap"] = (t["start"] - prev["end"]) if prev is not None else None
            out.append(figures)
    return out


def print_breakdown(runs: dict[str, list[dict]]) -> None:
    """Mean seconds per trial of every step, both arms side by side (all runs of an arm pooled)."""
    print("\nper trial, mean seconds (all runs of an arm pooled):")
    print(f"{'':<50}{'A bare pool':>12}{'B transfer-sweep':>18}{'B - A':>8}")
    totals = {"A": 0.0, "B": 0.0}
    for label, k in BREAKDOWN:
        means = {}
        for arm in "AB":
            values = [f[k] for r in runs[arm] for f in per_trial(r["trials"]) if f[k] is not None]
            means[arm] = statistics.mean(values) if values else 0.0
            totals[arm] += means[arm] if k != "s_train" else 0.0
        print(f"{label:<50}{means['A']:>10.2f} s{means['B']:>16.2f} s{means['B'] - means['A']:>+8.2f}")
    print(f"{'outside train(), in all':<50}{totals['A']:>10.2f} s{totals['B']:>16.2f} s"
          f"{totals['B'] - totals['A']:>+8.2f}")
    for arm in "AB":
        slots = sorted({len({t['slot'] for t in r['trials']}) for r in runs[arm]})
        print(f"  {arm}: slots that ran trials per run {slots}; processes that trained per run "
              f"{sorted({r['procs'] for r in runs[arm]})}")


def cpu_by_kind(runs: list[dict]) -> dict[str, float]:
    kinds = {k for r in runs for k in r["cpu"]}
    return {k: statistics.median(r["cpu"].get(k, 0.0) for r in runs) for k in kinds}


if __name__ == "__main__":
    main()
