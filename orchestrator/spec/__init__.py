"""What a sweep is, before anything runs: the spec's schema and its YAML, the image-set section, the
plan of keyed trials, the plan against a store's rows (diff), and the cost estimate. Pure: no store
is opened here, no Ray, no torch."""
from orchestrator.spec.loading import load_spec, parse_spec
from orchestrator.spec.plan import Plan, PlannedTrial, counts, make_plan
from orchestrator.spec.schema import DEFAULT_STORE, SpecError, SweepSpec
from orchestrator.spec.sweep import Sweep, resume_command

__all__ = ["DEFAULT_STORE", "Plan", "PlannedTrial", "SpecError", "Sweep", "SweepSpec", "counts", "load_spec",
           "make_plan", "parse_spec", "resume_command"]
