"""Which CPU a time was measured on: printed beside training times, since CPUs differ several-fold."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_line() -> str:
    """'<model>, <n> CPUs' for the machine this runs on."""
    return f"{cpu_name()}, {os.cpu_count()} CPUs"
