"""The sweep's own Ray metrics, for the dashboard's Metrics page and for Prometheus/Grafana.

Ray exports every `ray.util.metrics` metric from the node that records it, through that node's
metrics agent (`http://<node>:<metrics-export-port>/metrics`, Prometheus text format), with the
prefix `ray_`. The driver records how many trials are in each state; each running trial records its
own step, throughput, top-1 and checkpoint age, tagged with its readable name and key so a Grafana
panel can show one line per trial (docs/grafana-transfer-sweep.json).

Metrics are a view, never a reason to fail: a metric that cannot be recorded is skipped.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from ray.util.metrics import Gauge

log = logging.getLogger(__name__)

TRIALS = "transfer_sweep_trials"
STEP = "transfer_sweep_trial_step"
TOTAL_STEPS = "transfer_sweep_trial_total_steps"
IMAGES_PER_SECOND = "transfer_sweep_trial_images_per_second"
TOP1 = "transfer_sweep_trial_top1"
CHECKPOINT_AGE = "transfer_sweep_trial_checkpoint_age_seconds"
ROUND = "transfer_sweep_replicate_round"      # the round a replicating sweep's driver runs
UNITS = "transfer_sweep_replicate_units"      # its units of replication (kind: now, max)
CLAIM_CI = "transfer_sweep_claim_ci"          # a named claim's deciding difference (bound: low, mean, high)
TRIAL_STATES = ("done", "running", "failed", "pending")
TRIAL_TAGS = ("sweep", "trial", "key")
REPUBLISH_SECONDS = 5.0

_gauges: dict[str, Gauge] = {}  # one per name and process: Ray registers a metric name once


def _gauge(name: str, description: str, tag_keys: tuple[str, ...]) -> Gauge:
    if name not in _gauges:
        _gauges[name] = Gauge(name, description=description, tag_keys=tag_keys)
    return _gauges[name]


def _set(name: str, description: str, tag_keys: tuple[str, ...], value: float, tags: dict) -> None:
    try:
        _gauge(name, description, tag_keys).set(float(value), tags=tags)
    except Exception as exc:  # noqa: BLE001 (a metric is a view: recording one never fails a sweep)
        log.debug("metric %s not recorded: %s", name, exc)


def publish_trial_counts(sweep: str, counts: dict[str, int]) -> None:
    """Driver side: the number of the sweep's trials in each state (done/running/failed/pending)."""
    for state in TRIAL_STATES:
        _set(TRIALS, "trials of a sweep by state", ("sweep", "state"), counts.get(state, 0),
             {"sweep": sweep, "state": state})


def publish_rounds(sweep: str, state: dict) -> None:
    """Driver side, for a sweep that replicates until decided: the round it runs, its units and the
    budget, and each named claim's deciding 95% CI as last judged, tagged with its verdict."""
    if "round" in state:
        _set(ROUND, "round of a sweep that replicates until decided", ("sweep",), state["round"], {"sweep": sweep})
        for kind in ("units", "max_units"):
            _set(UNITS, "units of replication (split, seed): now and at most", ("sweep", "kind"), state[kind],
                 {"sweep": sweep, "kind": kind})
    for claim in state.get("claims", []):
        for bound in ("low", "mean", "high"):
            if claim.get(bound) is not None:
                _set(CLAIM_CI, "a named claim's deciding difference and its 95% CI", ("sweep", "claim", "bound",
                     "verdict"), claim[bound], {"sweep": sweep, "claim": str(claim["id"]), "bound": bound,
                                                "verdict": claim["verdict"]})


class TrialCountMetrics:
    """Driver side: called with the counts at every change, and records them again every
    REPUBLISH_SECONDS until closed. Ray drops what a process records before its metrics exporter is
    connected (measured here: 3-11 s after the process joins Ray), so a gauge recorded once, early,
    would never reach the endpoint."""

    def __init__(self, sweep: str, rounds: Optional[dict] = None):
        """`rounds`: a dict the driver keeps up to date for a replicating sweep (publish_rounds)."""
        self.sweep, self.rounds = sweep, rounds if rounds is not None else {}
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._again, name="sweep-metrics", daemon=True)
        self._thread.start()

    def __call__(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)
        publish_trial_counts(self.sweep, self.counts)

    def _again(self) -> None:
        while not self._stop.wait(REPUBLISH_SECONDS):
            if self.counts:
                publish_trial_counts(self.sweep, self.counts)
            if self.rounds:
                publish_rounds(self.sweep, self.rounds)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TrialMetrics:
    """Worker side: one running trial's gauges, tagged sweep / trial (readable name) / key."""

    def __init__(self, sweep: str, name: str, key: str):
        self.tags = {"sweep": sweep, "trial": name, "key": key}
        self.started = time.time()
        self.checkpoint_at: Optional[float] = None

    def reported(self, metrics: dict) -> None:
        """Record what the training reported after an evaluation (see workers.train.train)."""
        for name, field, description in (
                (STEP, "step", "SGD steps done"), (TOTAL_STEPS, "total_steps", "SGD steps planned"),
                (TOP1, "top1", "top-1 on the target half's test images at the last evaluation"),
                (IMAGES_PER_SECOND, "images_per_second",
                 "training images per second since the previous evaluation (evaluation included)")):
            if metrics.get(field) is not None:
                _set(name, description, TRIAL_TAGS, metrics[field], self.tags)
        if metrics.get("checkpoint_unix") is not None:
            self.checkpoint_at = float(metrics["checkpoint_unix"])
        self.tick()

    def tick(self) -> None:
        """Record the checkpoint age: seconds since the newest checkpoint (or since the attempt began)."""
        since = self.checkpoint_at if self.checkpoint_at is not None else self.started
        _set(CHECKPOINT_AGE, "seconds of work a crash of this trial would lose now", TRIAL_TAGS,
             max(0.0, time.time() - since), self.tags)

    def finished(self) -> None:
        """The trial stopped (committed, failed or gave up): it no longer trains."""
        _set(IMAGES_PER_SECOND, "", TRIAL_TAGS, 0.0, self.tags)
        _set(CHECKPOINT_AGE, "", TRIAL_TAGS, 0.0, self.tags)
