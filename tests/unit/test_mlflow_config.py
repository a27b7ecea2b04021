"""A spec that logs to MLflow where this driver cannot is one line before anything runs (the curves
reaching MLflow and TensorBoard from a real sweep: tests/integration/test_dashboard.py)."""
from __future__ import annotations

import pytest
from ray_cluster import free_port
from sweep_helpers import tiny_spec

from orchestrator.spec import load_spec


def test_mlflow_that_cannot_log_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    import importlib.util  # noqa: PLC0415

    from orchestrator.errors import UsageError  # noqa: PLC0415
    from orchestrator.execution.schedule import mlflow_callbacks  # noqa: PLC0415
    spec = load_spec(tiny_spec(tmp_path, "nomlflow", mlflow={"tracking_uri": "http://mlflow:5000"}), ())
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(UsageError, match=r"^mlflow: the spec logs trials to MLflow, but this driver has no "
                                         r"`mlflow` package: pip install 'transfer-sweep\[mlflow\]'"):
        mlflow_callbacks(spec)
    monkeypatch.undo()
    closed = load_spec(tiny_spec(tmp_path, "closed", mlflow={"tracking_uri": f"http://127.0.0.1:{free_port()}"}), ())
    with pytest.raises(UsageError, match=r"^mlflow.tracking_uri: MLflow at http://127.0.0.1:\d+ refused or did "
                                         r"not answer: [^\n]+$"):
        mlflow_callbacks(closed)
    assert mlflow_callbacks(load_spec(tiny_spec(tmp_path, "off"), ())) == []
