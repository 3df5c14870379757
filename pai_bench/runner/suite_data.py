"""A suite's datasets, loaded when a trial first needs them and held one at a time.

A suite with cells can need several datasets: the transfer suite's two CIFAR cells stored at
224 px are 9 GB of uint8 each. Holding them all in the driver would need their sum in memory
before the first trial starts; loading them in turn needs only the largest. The executors take
them in turn: the local one runs a dataset's trials together, the Tune one hands each dataset
to Ray's object store before it loads the next.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from pai_bench.data import Dataset
from pai_bench.spec import TrialSpec
from pai_bench.work import data_key, load_trial_data


class SuiteDatasets(Mapping[tuple, Dataset]):
    """The datasets of `specs` by `data_key`, in the order the specs first name them.

    Asking for one loads it and lets go of the one held before, so at most one is held here;
    a caller that keeps a dataset (as a running trial does) keeps it alive, and only then.
    """

    def __init__(self, specs: Sequence[TrialSpec]) -> None:
        self._specs: dict[tuple, TrialSpec] = {}
        for spec in specs:
            self._specs.setdefault(data_key(spec), spec)
        self._held: tuple[tuple, Dataset] | None = None

    def __getitem__(self, key: tuple) -> Dataset:
        if self._held is not None and self._held[0] == key:
            return self._held[1]
        spec = self._specs[key]
        self._held = None  # the previous dataset can go before the next one is read
        dataset = load_trial_data(spec)
        self._held = (key, dataset)
        return dataset

    def check(self) -> dict[tuple, int]:
        """Load every dataset once, in order, so that a missing one stops the run before any
        trial, with the first missing one named; return each one's class count. A suite of one
        dataset stays loaded; one of several reads each again when its trials run (at 224 px,
        about 30 s per CIFAR dataset on two cores)."""
        return {key: self[key].num_classes for key in self}

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)
