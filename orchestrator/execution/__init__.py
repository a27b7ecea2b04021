"""Everything that runs: the Ray session, the schedule (Tune, the dependency searcher, retries, the
watchdog, feasibility, metrics), the trainable that reaches into `workers`, the sweep's lease, the
data-preparation tasks, the Jobs API, the states of a sweep's trials and `verify`'s retraining.

The only package of the driver that imports Ray, and only in the modules that need it: the names
below are loaded when first used, so that `status` or `plan` never import Ray through this file.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for type checkers and for the import rules' test
    from orchestrator.execution.lease import acquire
    from orchestrator.execution.schedule import ProgressCallback, RunHooks, RunSummary, run_plan, tune_storage
    from orchestrator.execution.states import TrialState, TrialStatus, trial_states

PUBLIC = {"acquire": "lease", "ProgressCallback": "schedule", "RunHooks": "schedule", "RunSummary": "schedule",
          "run_plan": "schedule", "tune_storage": "schedule", "TrialState": "states", "TrialStatus": "states",
          "trial_states": "states"}
__all__ = ["ProgressCallback", "RunHooks", "RunSummary", "TrialState", "TrialStatus", "acquire", "run_plan",
           "trial_states", "tune_storage"]


def __getattr__(name: str) -> Any:
    if name in PUBLIC:
        return getattr(import_module(f"{__name__}.{PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
