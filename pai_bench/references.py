"""Published accuracies of PaI methods (`references.yaml` beside this module) and how a run's
ranking of the methods agrees with them.

Why rankings: a run's absolute numbers differ from a paper's by its protocol (a short CPU run
is not 160 epochs), its data (the CIFAR-10 JPEGs cost about 4 points) and by whether the paper
reports the last or the best epoch. What can be compared is the order of the methods at one
sparsity: Kendall's tau between the run's ranking and the published one over the methods both
have, beside the tau between two of the run's own seeds, the noise ceiling such a comparison
can reach.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

REFERENCES_FILE = Path(__file__).with_name("references.yaml")
#: Published grids give sparsities to 2-4 decimals (96.84 %, 0.9684); a run's 0.96838 is the same.
SPARSITY_TOLERANCE = 5e-4


@dataclass(frozen=True)
class Source:
    name: str
    cite: str
    where: str
    value: str  # best-epoch | last-epoch | unstated
    kind: str  # exact | printed-label | plot-read
    protocol: str
    verified: str
    uncertainty: float | None = None  # plot-read values: +- this many points
    seeds: int | None = None


@dataclass(frozen=True)
class Published:
    source: str
    model: str
    dataset: str
    method: str
    sparsity: float
    accuracy: float | None  # None: off the plot, `bound` says where
    std: float | None = None
    bound: str | None = None


@dataclass(frozen=True)
class References:
    sources: dict[str, Source]
    results: tuple[Published, ...]
    datasets: dict[str, dict[str, str]]  # a pai-bench dataset -> {compares_with, note}

    def compares_with(self, dataset: str) -> str | None:
        """The published dataset a pai-bench dataset's numbers sit beside (cifar10-jpeg: cifar10)."""
        entry = self.datasets.get(dataset)
        return entry["compares_with"] if entry else None

    def for_cell(self, model: str, dataset: str, sparsity: float) -> list[Published]:
        """Every published number for `model` on `dataset` (or what it compares with) at `sparsity`."""
        target = self.compares_with(dataset)
        return [
            result
            for result in self.results
            if result.model == model and result.dataset == target and abs(result.sparsity - sparsity) <= SPARSITY_TOLERANCE
        ]


def load_references(path: Path | str = REFERENCES_FILE) -> References:
    return _load(str(path))


@cache
def _load(path: str) -> References:
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    sources = {name: Source(name=name, **fields) for name, fields in raw["sources"].items()}
    results = tuple(Published(**entry) for entry in raw["results"])
    unknown = sorted({result.source for result in results} - sources.keys())
    if unknown:
        raise ValueError(f"{path}: results name sources it does not declare: {unknown}")
    return References(sources=sources, results=results, datasets=dict(raw["datasets"]))


@dataclass(frozen=True)
class RankAgreement:
    tau: float | None  # None: fewer than 3 methods in common, or no order on one side
    p_value: float | None
    methods: tuple[str, ...]  # those both rankings have


def rank_agreement(ours: Mapping[str, float], theirs: Mapping[str, float | None]) -> RankAgreement:
    """Kendall's tau-b between two accuracy rankings over the methods both have a number for."""
    common = tuple(sorted(method for method in ours if theirs.get(method) is not None))
    if len(common) < 3:
        return RankAgreement(None, None, common)
    result = stats.kendalltau([ours[m] for m in common], [theirs[m] for m in common])
    if math.isnan(result.statistic):
        return RankAgreement(None, None, common)
    return RankAgreement(float(result.statistic), float(result.pvalue), common)


def seed_rank_agreement(by_seed: Mapping[Any, Mapping[str, float]]) -> float | None:
    """Mean Kendall tau between the rankings of every two seeds (over the methods both ran):
    how far a run's ranking agrees with itself, the ceiling for agreeing with anyone else's."""
    taus = [rank_agreement(a, b).tau for a, b in itertools.combinations(by_seed.values(), 2)]
    taus = [tau for tau in taus if tau is not None]
    return statistics.mean(taus) if taus else None


def published_by_method(results: Sequence[Published], source: str) -> dict[str, float | None]:
    """One source's numbers of one cell, by method."""
    return {result.method: result.accuracy for result in results if result.source == source}


@dataclass(frozen=True)
class SourceComparison:
    source: Source
    published: dict[str, float | None]  # by method, this cell's numbers from the source
    agreement: RankAgreement  # the run's mean ranking against the source's
    seed_agreement: float | None  # the run's seeds against each other, over the same methods


@dataclass(frozen=True)
class CellComparison:
    model: str
    dataset: str
    sparsity: float
    sources: tuple[SourceComparison, ...]


def compare_with_published(records: Sequence[Mapping[str, Any]], references: References | None = None) -> list[CellComparison]:
    """For each (model, dataset, sparsity) of the finished, trained records that a published
    source covers: the source's numbers, and how the run's ranking of its rows agrees with the
    source's over the methods both have (a row is compared under its own name, so variants
    such as px-uniform have no published counterpart)."""
    references = references or load_references()
    cells: dict[tuple[str, str, float], dict[Any, dict[str, float]]] = {}
    for record in records:
        if record.get("status") != "done" or record.get("test_acc") is None or record.get("ablation"):
            continue
        key = (record.get("model"), record.get("dataset"), float(record["sparsity"]))
        cells.setdefault(key, {}).setdefault(record.get("seed"), {})[row_name(record)] = float(record["test_acc"])
    comparisons = []
    for (model, dataset, sparsity), by_seed in sorted(cells.items()):
        published = references.for_cell(model, dataset, sparsity)
        if not published:
            continue
        means = _means(by_seed)
        sources = []
        for name in sorted({result.source for result in published}):
            theirs = published_by_method(published, name)
            agreement = rank_agreement(means, theirs)
            shared = {seed: {m: acc for m, acc in accs.items() if m in agreement.methods} for seed, accs in by_seed.items()}
            sources.append(SourceComparison(references.sources[name], theirs, agreement, seed_rank_agreement(shared)))
        comparisons.append(CellComparison(model, dataset, sparsity, tuple(sources)))
    return comparisons


def row_name(record: Mapping[str, Any]) -> str:
    """The record's row; records from before rows were named carry only their method."""
    return record.get("row") or record["method"]


def _means(by_seed: Mapping[Any, Mapping[str, float]]) -> dict[str, float]:
    rows: dict[str, list[float]] = {}
    for accuracies in by_seed.values():
        for row, accuracy in accuracies.items():
            rows.setdefault(row, []).append(accuracy)
    return {row: statistics.mean(values) for row, values in rows.items()}
