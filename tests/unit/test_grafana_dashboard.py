"""docs/grafana-transfer-sweep.json queries only the metrics orchestrator/execution/metrics.py records, all of them."""
import json
import re
from pathlib import Path

from orchestrator.execution.metrics import (
    CHECKPOINT_AGE,
    CLAIM_CI,
    IMAGES_PER_SECOND,
    ROUND,
    STEP,
    TOP1,
    TOTAL_STEPS,
    TRIALS,
    UNITS,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-transfer-sweep.json"
KNOWN = {"ray_" + name for name in (TRIALS, STEP, TOTAL_STEPS, IMAGES_PER_SECOND, TOP1, CHECKPOINT_AGE, ROUND,
                                     UNITS, CLAIM_CI)}
DATASOURCE_UIDS = {"${datasource}", "$datasource"}


def _panels(panels: list) -> list:
    """Every panel, those inside collapsed rows included."""
    return [q for p in panels for q in [p, *_panels(p.get("panels", []))]]


def problems(dashboard: dict, known: set[str]) -> list[str]:
    """What is wrong with a dashboard's panels; empty when nothing is."""
    found, used, ids = [], set(), set()
    if not any(v.get("name") == "datasource" and v.get("type") == "datasource"
               for v in dashboard.get("templating", {}).get("list", [])):
        found.append("no datasource variable named 'datasource'")
    for panel in _panels(dashboard.get("panels", [])):
        pid = panel.get("id")
        if pid in ids:
            found.append(f"panel id {pid} used twice")
        ids.add(pid)
        if "gridPos" not in panel:
            found.append(f"panel {pid} has no gridPos")
        for target in panel.get("targets", []):
            if (target.get("datasource") or {}).get("uid") not in DATASOURCE_UIDS:
                found.append(f"panel {pid} target {target.get('refId')}: datasource is not $datasource")
            names = set(re.findall(r"ray_transfer_sweep_\w+", target.get("expr", "")))
            found += [f"panel {pid}: unknown metric {name}" for name in sorted(names - known)]
            used |= names
    found += [f"metric {name} used by no panel" for name in sorted(known - used)]
    return found


def test_dashboard_matches_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "transfer-sweep" and dashboard["description"]
    assert problems(dashboard, KNOWN) == []


def test_checker_reports_problems():
    target = {"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"}}
    dashboard = {
        "templating": {"list": [{"name": "datasource", "type": "datasource"}]},
        "panels": [
            {"id": 1, "gridPos": {}, "targets": [{**target, "expr": "ray_transfer_sweep_trials"}]},
            {"id": 2, "type": "row", "gridPos": {}, "panels": [
                {"id": 1, "gridPos": {}, "targets": [{**target, "expr": "ray_transfer_sweep_trial_stepz"}]},
                {"id": 3, "targets": [{"refId": "B", "expr": "ray_transfer_sweep_trials",
                                       "datasource": {"uid": "prom-1"}}]}]},
        ],
    }
    assert problems(dashboard, {"ray_transfer_sweep_trials", "ray_transfer_sweep_trial_step"}) == [
        "panel id 1 used twice",
        "panel 1: unknown metric ray_transfer_sweep_trial_stepz",
        "panel 3 has no gridPos",
        "panel 3 target B: datasource is not $datasource",
        "metric ray_transfer_sweep_trial_step used by no panel",
    ]
    assert problems({"panels": []}, set()) == ["no datasource variable named 'datasource'"]
