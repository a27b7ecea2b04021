"""The layer the driver (`orchestrator`) and the trial workers (`workers`) share.

- `store`: the byte API over a local folder or S3, and `layout`: where things live in it;
- `records`: what is stored (checkpoints, result and curve rows, progress, failure/attempt records);
- `settings`: `TrialSettings`, the typed contract the plan hands to workers;
- `vocabulary`: treatments, labels, directions, cut points and datasets, each defined once.

It imports neither torch nor Ray nor either side, so both sides can depend on it.
"""
