"""What a trial ran on, recorded beside its timings: seconds mean little without the machine."""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch


def describe_machine() -> dict[str, Any]:
    """The CPU model, its logical cores, the torch threads a trial uses and the GPU, if any."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": _cpu_model(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_label(machine: Mapping[str, Any]) -> str:
    threads = machine.get("torch_threads")
    label = f"{machine.get('cpu', '?')}, {machine.get('cpus', '?')} logical CPUs, {threads} torch thread{'s' if threads != 1 else ''} a trial"
    return label + (f", {machine['gpu']}" if machine.get("gpu") else "")


def machines_line(records: Sequence[Mapping[str, Any]]) -> str:
    """The machines the done trials ran on, for a page's footer ("" when none recorded one)."""
    counts = Counter(machine_label(r["machine"]) for r in records if r.get("status") == "done" and r.get("machine"))
    if not counts:
        return ""
    if len(counts) == 1:
        return f"Trials ran on {next(iter(counts))}. "
    return "Trials ran on " + "; ".join(f"{label} ({n} trials)" for label, n in counts.most_common()) + ". "
