"""Can the cluster ever run a trial? Checked before training, so an impossible request fails at once
instead of pending forever.

A trial needs `resources.cpus` CPUs and `resources.gpus` GPUs on one node. `judge` compares that with
the live nodes and, where an autoscaler is configured, with the node types it may add (read from the
cluster launcher's config on the head, ~/ray_bootstrap_config.yaml, or TRANSFER_SWEEP_AUTOSCALER_CONFIG):
- fits a live node: run;
- fits only a node type the autoscaler can add: run, saying what it waits for, and give up after a
  configurable time (watchdog.py);
- fits nothing: exit 2 with one line naming the resource, the demand and what exists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

AUTOSCALER_CONFIG_ENV = "TRANSFER_SWEEP_AUTOSCALER_CONFIG"
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where the cluster launcher leaves it on the head
NAMES = {"CPU": "CPU", "GPU": "GPU"}


@dataclass(frozen=True)
class Verdict:
    """`kind`: "ok" (a live node fits), "scale" (only a node type the autoscaler can add fits: `node_type`),
    or "infeasible"; `line` says why in one line."""

    kind: str
    line: str
    node_type: Optional[str] = None


def fits(demand: dict[str, float], node: dict[str, float]) -> bool:
    """Whether one node has at least the demand of every resource."""
    return all(node.get(r, 0.0) >= amount for r, amount in demand.items() if amount > 0)


def _largest(resource: str, nodes: list[dict[str, float]]) -> float:
    return max((n.get(resource, 0.0) for n in nodes), default=0.0)


def _amount(x: float) -> str:
    return f"{x:g}"


def judge(demand: dict[str, float], nodes: list[dict[str, float]],
          node_types: Optional[dict[str, dict[str, float]]] = None) -> Verdict:
    """Pure: where a trial with `demand` ({"CPU": 1, "GPU": 0.5}) can run."""
    if any(fits(demand, n) for n in nodes):
        return Verdict("ok", "a live node fits")
    for name, resources in sorted((node_types or {}).items()):
        if fits(demand, resources):
            need = ", ".join(f"{_amount(a)} {r}" for r, a in demand.items() if a > 0)
            return Verdict("scale", f"waiting for a {name} node from the autoscaler (a trial needs {need})", name)
    everything = nodes + list((node_types or {}).values())
    # name the resource nothing offers enough of; else the first one the live nodes lack
    short = (next((r for r, a in demand.items() if a > _largest(r, everything)), None)
             or next((r for r, a in demand.items() if a > _largest(r, nodes)), None) or next(iter(demand)))
    have = _amount(_largest(short, nodes))
    types = (f"; the autoscaler's node types offer at most {_amount(_largest(short, list(node_types.values())))}"
             if node_types else "; no autoscaler node types are configured")
    return Verdict("infeasible", f"resources.{'gpus' if short == 'GPU' else 'cpus'}: a trial needs "
                   f"{_amount(demand[short])} {short} on one node, but the largest of the {len(nodes)} live "
                   f"node(s) has {have}{types}")


def autoscaler_node_types(path: Optional[str] = None) -> dict[str, dict[str, float]]:
    """The node types an autoscaler may add (max_workers > 0): name -> resources. Empty without a config."""
    where = Path(os.path.expanduser(path or os.environ.get(AUTOSCALER_CONFIG_ENV) or BOOTSTRAP_CONFIG))
    try:
        config = yaml.safe_load(where.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    types = (config or {}).get("available_node_types") if isinstance(config, dict) else None
    out: dict[str, dict[str, float]] = {}
    for name, spec in (types or {}).items():
        if isinstance(spec, dict) and int(spec.get("max_workers", 0) or 0) > 0:
            resources = spec.get("resources") or {}
            out[str(name)] = {str(k): float(v) for k, v in resources.items() if isinstance(v, (int, float))}
    return out


def live_nodes() -> list[dict[str, float]]:
    """Total resources of every alive Ray node (the driver must be connected)."""
    import ray  # noqa: PLC0415 (Ray only where a sweep runs)
    return [{str(k): float(v) for k, v in n.get("Resources", {}).items()} for n in ray.nodes() if n.get("Alive")]


def trial_demand(cpus: float, gpus: float) -> dict[str, float]:
    """What one trial asks of a node."""
    return {"CPU": float(cpus), "GPU": float(gpus)}
