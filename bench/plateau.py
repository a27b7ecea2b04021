"""Training length from a measured plateau: the same bases trained for several lengths, side by side.

Each length is a complete training (warm-up + cosine over that many epochs), not a point on one long
curve, because a cosine schedule's end depends on its length. Bases of the spec's first random split
(both halves, the first seed) are trained once per length, two at a time (one thread each), with
`workers.trial.run_trial` on a local store; a length's row has the same key as the study's own base
at that length, so pointing the study at the same store reuses them.

    python bench/plateau.py sweeps/converged.yaml --epochs 5 8 12 16 24 40 --store ./store

Prints, per length, each half's top1_paper, their mean, the gap to the longest length and the gain
over the last 20 % of that training's own curve; then the shortest length whose mean is within --within
(0.003) of the longest, and as the last line that length over the longest (1.00: no plateau found).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.spec import load_spec, make_plan  # noqa: E402
from sweepcore.settings import TrialSettings  # noqa: E402


def _train(settings: TrialSettings, store_uri: str) -> tuple[dict, list[dict]]:
    from sweepcore import records
    from sweepcore import store as st
    from workers.trial import run_trial
    store = st.open_store(store_uri)
    row = run_trial(settings, store)
    curve = records.read_curve(store, settings.key)
    return row, curve.to_pylist() if curve is not None else []


def bases_for(spec_path: str, epochs: float, store: str, overrides=(), halves="AB") -> list:
    spec = load_spec(spec_path, (*overrides, f"train.epochs={epochs}", f"store={store}"))
    split = next(s.split for s in spec.splits if s.split.startswith("random:"))
    return [t for t in make_plan(spec).bases
            if t.split == split and t.seed == spec.seeds[0] and t.target_half in halves]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--epochs", type=float, nargs="+", default=[5, 8, 12, 16, 24, 40])
    ap.add_argument("--store", default="./store")
    ap.add_argument("--within", type=float, default=0.003)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--halves", default="AB", help="target halves to train (default both)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="spec override")
    args = ap.parse_args()
    store = os.path.abspath(args.store)
    jobs = [(e, t) for e in sorted(args.epochs, reverse=True)
            for t in bases_for(args.spec, e, store, tuple(args.set), args.halves)]
    results: dict[tuple[float, str], tuple[dict, list]] = {}
    started = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(_train, t.settings, store): (e, t.target_half) for e, t in jobs}
        for fut in as_completed(futures):
            e, half = futures[fut]
            results[(e, half)] = fut.result()
            row = results[(e, half)][0]
            print(f"done {e:g} epochs half {half}: top1_paper {row['top1_paper']:.4f} "
                  f"({row['wall_seconds']:.0f} s, {time.time() - started:.0f} s since start)", flush=True)
    print_table(results, args.within)
    return 0


def late_gain(curve: list[dict], fraction: float = 0.2) -> float:
    """top-1 at the end minus top-1 at the start of the last `fraction` of the curve's steps."""
    if len(curve) < 2:
        return float("nan")
    last = curve[-1]["step"]
    start = min((r for r in curve if r["step"] >= (1 - fraction) * last), key=lambda r: r["step"])
    return curve[-1]["top1"] - start["top1"]


def print_table(results, within: float) -> None:
    lengths = sorted({e for e, _ in results})
    halves = sorted({h for _, h in results})
    longest = lengths[-1]
    ref = sum(results[(longest, h)][0]["top1_paper"] for h in halves) / len(halves)
    print(f"\n{'epochs':>6} " + " ".join(f"{'half ' + h:>8}" for h in halves)
          + f" {'mean':>7} {'vs longest':>10} {'late gain':>9} {'s/train':>8}")
    chosen = None
    for e in lengths:
        vals = [results[(e, h)][0]["top1_paper"] for h in halves]
        mean = sum(vals) / len(vals)
        gains = [late_gain(results[(e, h)][1]) for h in halves]
        secs = sum(results[(e, h)][0]["wall_seconds"] for h in halves) / len(halves)
        print(f"{e:>6g} " + " ".join(f"{v:>8.4f}" for v in vals) + f" {mean:>7.4f} {mean - ref:>+10.4f}"
              f" {sum(gains) / len(gains):>+9.4f} {secs:>8.0f}")
        if chosen is None and mean >= ref - within:
            chosen = e
    print(f"PLATEAU shortest length within {within:.3f} of {longest:g} epochs: {chosen:g} epochs")
    # 1.00 means no shorter length comes close: the longest measured is not known to be a plateau
    print(f"RATIO plateau_over_longest={chosen / longest:.2f}")


if __name__ == "__main__":
    sys.exit(main())
