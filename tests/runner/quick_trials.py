"""Quickstart trials cut down to seconds each: real data, the real model and protocol."""

from __future__ import annotations

from pai_bench.config import load_config
from pai_bench.grid import expand_grid
from pai_bench.trial import TrialSpec

#: Overrides of a one-trial quickstart suite; later overrides win.
SMALL = ["suite=quickstart", "data.subset=200", "train.epochs=1", "seeds=1", "sparsities=[0.5]", "methods=[random]"]


def small_specs(*overrides: str) -> list[TrialSpec]:
    return expand_grid(load_config("quickstart", [*SMALL[1:], *overrides]))
