"""The order of work: a Tune Searcher that hands out a trial only once its base is committed.

Tune has no notion of dependencies between trials (ray-project/ray#23654). `suggest()` returns the
first pending trial whose base is done, None while everything left is waiting, and FINISHED when
nothing is left; a trial whose base failed for good is blocked instead of waited for.
"""
from __future__ import annotations

from ray.tune.search import Searcher

from orchestrator.spec.plan import PlannedTrial
from sweepcore.store import StoreRef


class DependencySearcher(Searcher):
    """Hands out pending trials in plan order as soon as their base trial has committed a result."""

    def __init__(self, trials: list[PlannedTrial], done: set[str], store: StoreRef, run: str = "", retries: int = 2):
        super().__init__()  # no metric: this searcher orders work, it does not optimise
        self.pending = list(trials)
        self.done = set(done)
        self.failed: set[str] = set()
        self.blocked: list[PlannedTrial] = []
        self.running: dict[str, str] = {}  # tune trial id -> key
        self.store, self.run, self.retries = store, run, retries

    def suggest(self, trial_id: str):
        for i, trial in enumerate(self.pending):
            if trial.base_key is None or trial.base_key in self.done:
                del self.pending[i]
                self.running[trial_id] = trial.key
                return {"settings": trial.settings.to_dict(), "store": self.store, "run": self.run,
                        "retries": self.retries}
        self._block_orphans()
        if not self.pending:
            return Searcher.FINISHED
        return None

    def _block_orphans(self) -> None:
        """Trials whose base failed for good can never run: give up on them instead of waiting."""
        keep = []
        for trial in self.pending:
            (self.blocked.append(trial) if trial.base_key in self.failed else keep.append(trial))
        self.pending = keep

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the store is the state, and `resume` plans again from it."""

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        key = self.running.pop(trial_id, None)
        if key is not None:
            committed = not error and bool((result or {}).get("committed"))
            (self.done if committed else self.failed).add(key)
