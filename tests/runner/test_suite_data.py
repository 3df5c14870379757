"""A suite's datasets: loaded on demand, one held at a time, all of them before any trial."""

from __future__ import annotations

import gc
import weakref
from collections import Counter
from pathlib import Path

import pytest
from quick_trials import small_specs

from pai_bench.config import load_config
from pai_bench.errors import UserError
from pai_bench.runner import run_suite, suite_data
from pai_bench.runner.suite_data import SuiteDatasets
from pai_bench.store import ResultStore
from pai_bench.trial import data_key, load_trial_data

#: A suite of two cells on two datasets: the shipped images as they are, and resized to 16 px.
TWO_CELLS = """\
model: {name: quicknet}
data: {name: quickstart, augment: none, subset: 100}
train: {epochs: 1, batch_size: 50, lr: 0.05, milestones: [], device: cpu}
cells:
  native: {}
  small:
    data: {image_size: 16}
methods: [random]
sparsities: [0.5]
seeds: 2
executor: local
"""


@pytest.fixture
def loads(monkeypatch) -> Counter:
    """How often each data key was read from disk."""
    counted: Counter = Counter()

    def counting(spec):
        counted[data_key(spec)] += 1
        return load_trial_data(spec)

    monkeypatch.setattr(suite_data, "load_trial_data", counting)
    return counted


def two_datasets() -> tuple[SuiteDatasets, tuple, tuple]:
    native, small = small_specs()[0], small_specs("data.image_size=16")[0]
    return SuiteDatasets([native, small, native]), data_key(native), data_key(small)


def test_a_dataset_loads_when_asked_for_and_the_previous_one_is_let_go(loads):
    datasets, native, small = two_datasets()
    assert list(datasets) == [native, small] and len(datasets) == 2
    assert not loads
    first = datasets[native]
    assert datasets[native] is first and loads == {native: 1}
    held = weakref.ref(first)
    del first
    assert datasets[small].train.images.shape[-1] == 16
    gc.collect()
    assert held() is None, "the first dataset is still held after the second was loaded"
    assert loads == {native: 1, small: 1}


def test_check_loads_every_dataset_in_order_and_keeps_the_last(monkeypatch):
    datasets, native, small = two_datasets()
    order = []
    monkeypatch.setattr(suite_data, "load_trial_data", lambda spec: order.append(data_key(spec)) or load_trial_data(spec))
    datasets.check()
    assert order == [native, small]
    datasets[small]
    assert order == [native, small], "the last dataset was read again after check()"


def test_a_missing_dataset_stops_the_suite_before_any_trial(tmp_path):
    suite = tmp_path / "two.yaml"
    suite.write_text(TWO_CELLS)
    missing = ["cells.small.data.name=cifar10", "cells.small.data.download=false", f"cells.small.data.root={tmp_path / 'none'}"]
    config = load_config(str(suite), [f"out={tmp_path / 'run'}", *missing])
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        run_suite(config, progress=False)
    assert ResultStore(Path(tmp_path / "run")).records() == []


def test_a_suite_reads_each_dataset_it_still_needs_and_no_other(tmp_path, loads):
    suite = tmp_path / "two.yaml"
    suite.write_text(TWO_CELLS)
    config = load_config(str(suite), [f"out={tmp_path / 'run'}"])
    summary = run_suite(config, progress=False)
    assert summary.counts["done"] == 4
    # check() reads both, then the trials run cell by cell (seed-major in the grid), each
    # dataset read once more: twice each, not once per trial.
    assert sorted(loads.values()) == [2, 2]
    loads.clear()
    assert run_suite(config, progress=False).counts == Counter(skipped=4)
    assert not loads, "a rerun with every trial finished loaded a dataset"


def test_under_tune_each_cell_trains_on_its_own_dataset(tmp_path):
    suite = tmp_path / "two.yaml"
    suite.write_text(TWO_CELLS)
    config = load_config(str(suite), [f"out={tmp_path / 'run'}", "executor=tune", "resources.cpu=1", "seeds=1"])
    assert run_suite(config, progress=False).counts == Counter(done=2)
    dense_macs = {record["cell"]: record["macs_dense"] for record in ResultStore(tmp_path / "run").records()}
    # quicknet's convolutions cost (16 / 32)^2 as much on the small cell's 16-px images.
    assert dense_macs["small"] * 4 == pytest.approx(dense_macs["native"], rel=0.01)
