"""Running a cut-down suite from a benchmark script and reading back what its trials recorded."""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime
from typing import Any

import torch

from pai_bench.config import load_config
from pai_bench.pages import load_run_records
from pai_bench.runner import run_suite


def add_run_arguments(parser: argparse.ArgumentParser, out_dir: str) -> None:
    """The options every suite-running benchmark takes."""
    parser.add_argument("--suite", default="cifar10")
    parser.add_argument("--out-dir", default=out_dir, help="where the runs' folders go")
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE overrides for every run")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")


def report_header(args: argparse.Namespace) -> dict[str, Any]:
    """Where and when a benchmark ran, for the top of its JSON."""
    return {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "suite": args.suite,
    }


def run(suite: str, overrides: list[str]) -> tuple[list[dict[str, Any]], float]:
    """The records of `pai-bench run suite=SUITE OVERRIDES...`, and its wall time in seconds."""
    config = load_config(suite, overrides)
    started = time.perf_counter()
    summary = run_suite(config, progress=False)
    return load_run_records(summary.out), time.perf_counter() - started


def steady_epoch_seconds(records: list[dict[str, Any]]) -> float | None:
    """Median epoch time of the finished trials, first epochs (compilation, warm-up) left out."""
    seconds = [epoch["seconds"] for r in records if r.get("status") == "done" for epoch in r["epochs"][1:]]
    return statistics.median(seconds) if seconds else None


def most_at_once(records: list[dict[str, Any]]) -> int:
    """The most trials whose start-to-finish spans overlapped: how many really ran together."""
    events = []
    for r in records:
        if r.get("started_at") and r.get("finished_at"):
            events += [(datetime.fromisoformat(r["started_at"]), 1), (datetime.fromisoformat(r["finished_at"]), -1)]
    running = peak = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):
        running += change
        peak = max(peak, running)
    return peak
