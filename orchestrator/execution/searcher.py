"""The order of work: a Tune Searcher that hands out a trial only once its base is committed.

Tune has no notion of dependencies between trials (ray-project/ray#23654). `suggest()` returns the
first pending trial (in plan order) whose base is done, None while everything left is waiting, and
FINISHED when nothing is left; a trial whose base failed for good is blocked instead of waited for.

Tune calls `suggest()` once per free slot and again on every pass of its loop, so each call costs
O(log n), not a scan of what is pending: ready trials sit in a heap by plan position, waiting ones
under the key of the base they wait for (bench/scale.py runs 10,000 trials through it).
"""
from __future__ import annotations

import heapq
from collections import defaultdict

from ray.tune.search import Searcher

from orchestrator.spec.plan import PlannedTrial
from sweepcore.store import StoreRef


class DependencySearcher(Searcher):
    """Hands out pending trials in plan order as soon as their base trial has committed a result.

    `resources` (cpus, gpus) go into every config: the trainable asks for them for the trial's
    training task (trainable.py)."""

    def __init__(self, trials: list[PlannedTrial], done: set[str], store: StoreRef, run: str = "", retries: int = 2,
                 resources: tuple[float, float] = (1.0, 0.0)):
        super().__init__()  # no metric: this searcher orders work, it does not optimise
        self.done = set(done)
        self.failed: set[str] = set()
        self.blocked: list[PlannedTrial] = []
        self.running: dict[str, str] = {}  # tune trial id -> key
        self.store, self.run, self.retries = store, run, retries
        self.cpus, self.gpus = resources
        self._ready: list[tuple[int, PlannedTrial]] = []  # heap by plan position
        self._waiting: dict[str, list[tuple[int, PlannedTrial]]] = defaultdict(list)  # base key -> dependents
        for position, trial in enumerate(trials):  # every base is pending or done: none has failed yet
            if trial.base_key is None or trial.base_key in self.done:
                heapq.heappush(self._ready, (position, trial))
            else:
                self._waiting[trial.base_key].append((position, trial))

    @property
    def pending(self) -> list[PlannedTrial]:
        """Every trial not yet handed out nor blocked, in plan order (a copy)."""
        entries = [*self._ready, *(e for waiting in self._waiting.values() for e in waiting)]
        return [trial for _, trial in sorted(entries, key=lambda e: e[0])]

    def _next_ready(self) -> PlannedTrial | None:
        """Take the ready trial to hand out next (the first in plan order), or None to hand out nothing
        now. The one choice a variant of this searcher overrides (bench/scheduling.py's barrier)."""
        return heapq.heappop(self._ready)[1] if self._ready else None

    def _block_waiting_on(self, key: str) -> None:
        """Trials waiting for `key`, which failed for good, can never run, nor can anything waiting for them."""
        for _, trial in self._waiting.pop(key, []):
            self.blocked.append(trial)
            self._block_waiting_on(trial.key)

    def suggest(self, trial_id: str):
        trial = self._next_ready()
        if trial is not None:
            self.running[trial_id] = trial.key
            return {"settings": trial.settings.to_dict(), "store": self.store, "run": self.run,
                    "retries": self.retries, "cpus": self.cpus, "gpus": self.gpus}
        if not self._ready and not self._waiting:
            return Searcher.FINISHED
        return None

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the store is the state, and `resume` plans again from it."""

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        key = self.running.pop(trial_id, None)
        if key is None:
            return
        if not error and bool((result or {}).get("committed")):
            self.done.add(key)
            for entry in self._waiting.pop(key, []):
                heapq.heappush(self._ready, entry)
        else:
            self.failed.add(key)
            self._block_waiting_on(key)
