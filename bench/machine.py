"""What the benchmarks print beside every time they publish: which CPU measured it (the CLI's own
helper, so a bench and `transfer-sweep run` name a machine the same way)."""
from __future__ import annotations

from orchestrator.machine import cpu_name

__all__ = ["cpu_name"]
