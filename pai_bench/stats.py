"""Seed-level statistics of a run: which differences are real and which are seed noise.

A *cell* is one (suite, model, dataset, sparsity); a *row* is one method in it (an ablated
method, e.g. SNIP with its masks shuffled, is a row of its own). Per cell: mean, std and 95 %
confidence intervals of each row's test accuracy over seeds; the best row; every other row
tested against it (paired by seed when both have the same seeds done, Welch's t-test
otherwise), Holm-corrected within the cell; the probability of improvement of each pair.
Across table columns (model, dataset, sparsity; not a suite's cells): mean rank, the interquartile mean of normalised accuracy, a Friedman test.

Everything is computed by scipy.stats and statsmodels; this module only decides which test
applies and refuses to give a p-value where none can exist (fewer than two seeds, or values
that do not vary): those comparisons are "not testable", never p = 0 or p = 1.

Failed, diverged and unfinished trials carry no accuracy: they are left out of every figure
and counted per row (`Row.unfinished`), so a table can show them.

Over 500 lines on purpose: it is one job, records in and verdicts out, and its parts (the tests
within a cell, the ranking across cells, what n seeds can detect) share the verdicts, alpha and
the choice of test; split, each part would import the others' constants back. It sits above the
method registry (`is_reference` asks a plugin whether it keeps every weight), so it is in the
suite's layer, not the bottom (docs/architecture.md).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from pai_bench.errors import UserError

ALPHA = 0.05
CONFIDENCE = 0.95
#: Paired tests (`compare(paired_test=...)`): the t-test on seed differences, or the
#: Wilcoxon signed-rank test (which cannot reach p < 0.05 with fewer than 6 seeds).
PAIRED_TESTS = ("ttest", "wilcoxon")
#: Bootstrap intervals only from this many seeds on: below it the resamples are too few to
#: say anything a t-interval does not.
BOOTSTRAP_MIN_N = 5
#: Ablation names as row labels read them: `snip (shuffled)`.
ABLATION_LABELS = {"shuffle": "shuffled", "reinit": "reinitialised", "invert": "inverted"}

NOT_TESTABLE = "not testable"
BEST, TIED, WORSE = "best", "tied", "worse"
SAME, LOWER, HIGHER = "same", "lower", "higher"


# --- one row: summary statistics -----------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A row's accuracy over seeds. Intervals are None where they cannot be computed."""

    n: int
    mean: float | None
    std: float | None  # sample std (ddof=1); None for n < 2
    ci: tuple[float, float] | None  # t-based 95 % interval of the mean
    ci_bootstrap: tuple[float, float] | None  # BCa bootstrap interval, n >= BOOTSTRAP_MIN_N


def summarize(values: Sequence[float], confidence: float = CONFIDENCE, bootstrap_seed: int = 0) -> Summary:
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = float(x.mean())
    if n < 2:
        return Summary(n, mean, None, None, None)
    std = float(x.std(ddof=1))
    if _constant(x):
        return Summary(n, mean, 0.0, (mean, mean), None)
    low, high = sps.t.interval(confidence, n - 1, loc=mean, scale=sps.sem(x))
    boot = None
    if n >= BOOTSTRAP_MIN_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate resamples: the interval comes back NaN
            result = sps.bootstrap((x,), np.mean, confidence_level=confidence, rng=np.random.default_rng(bootstrap_seed))
        interval = result.confidence_interval
        if np.isfinite(interval.low) and np.isfinite(interval.high):
            boot = (float(interval.low), float(interval.high))
    return Summary(n, mean, std, (float(low), float(high)), boot)


# --- two rows: a test and the probability of improvement -----------------------------------


@dataclass(frozen=True)
class Comparison:
    """`row` tested against `against` (the cell's best, or the method an ablation ablates).

    `p` is None exactly when the comparison is not testable (`reason` says why); `p_holm` and
    `reject` are set by the cell's Holm correction. `prob_improvement` is P(against > row).
    """

    row: str
    against: str
    test: str | None  # "paired t" | "Wilcoxon" | "Welch t" | None
    n: tuple[int, int]
    statistic: float | None = None
    p: float | None = None
    reason: str | None = None
    prob_improvement: float | None = None
    p_holm: float | None = None
    reject: bool | None = None

    @property
    def testable(self) -> bool:
        return self.p is not None


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float | None:
    """P(X > Y) for one draw of each, ties counting half: the Mann-Whitney U statistic of x
    over n_x * n_y, as rliable's `probability_of_improvement` computes it. None if either is empty."""
    if len(x) == 0 or len(y) == 0:
        return None
    return float(sps.mannwhitneyu(x, y).statistic) / (len(x) * len(y))


def compare(
    row: Mapping[int, float],
    against: Mapping[int, float],
    paired_test: str = "ttest",
    names: tuple[str, str] = ("row", "against"),
) -> Comparison:
    """Test `row` against `against`, each a {seed: accuracy} of the runs that finished.

    Paired by seed when both have exactly the same seeds (a seed fixes the init and the
    pruning split, so paired differences remove that shared noise); Welch's t-test on what
    each has otherwise. Two-sided.
    """
    if paired_test not in PAIRED_TESTS:
        raise ValueError(f"paired_test must be one of {PAIRED_TESTS}, not {paired_test!r}")
    a, b = np.array(list(row.values()), dtype=float), np.array(list(against.values()), dtype=float)
    common = dict(row=names[0], against=names[1], n=(len(a), len(b)), prob_improvement=probability_of_improvement(b, a))
    paired = set(row) == set(against)
    if len(a) < 2 or len(b) < 2:
        test = ("paired t" if paired_test == "ttest" else "Wilcoxon") if paired else "Welch t"
        return Comparison(test=test, reason="fewer than 2 seeds", **common)
    if paired:
        seeds = sorted(row)
        differences = np.array([row[s] - against[s] for s in seeds])
        if paired_test == "wilcoxon":
            if np.all(np.abs(differences) <= _tolerance(differences)):
                return Comparison(test="Wilcoxon", reason="identical values", **common)
            result = sps.wilcoxon(differences)
            return Comparison(test="Wilcoxon", statistic=float(result.statistic), p=float(result.pvalue), **common)
        if _constant(differences):
            # Same difference on every seed: no variance to test against (scipy would say p = 0).
            return Comparison(test="paired t", reason="identical values", **common)
        result = sps.ttest_rel([row[s] for s in seeds], [against[s] for s in seeds])
        return Comparison(test="paired t", statistic=float(result.statistic), p=float(result.pvalue), **common)
    if _constant(a) and _constant(b):
        return Comparison(test="Welch t", reason="identical values", **common)
    result = sps.ttest_ind(a, b, equal_var=False)
    return Comparison(test="Welch t", statistic=float(result.statistic), p=float(result.pvalue), **common)


def holm(comparisons: Sequence[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Holm's step-down correction over the testable comparisons; the others pass unchanged."""
    testable = [i for i, c in enumerate(comparisons) if c.testable]
    out = list(comparisons)
    if testable:
        reject, adjusted, _, _ = multipletests([comparisons[i].p for i in testable], alpha=alpha, method="holm")
        for i, r, q in zip(testable, reject, adjusted):
            out[i] = replace(comparisons[i], p_holm=float(q), reject=bool(r))
    return out


# --- one cell ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowKey:
    """A row of a cell: a method or a variant of one (`px-uniform`), possibly under an
    ablation (`snip (shuffled)`). `method` is the row's name."""

    method: str
    ablation: str | None = None

    @property
    def label(self) -> str:
        if not self.ablation:
            return self.method
        return f"{self.method} ({ABLATION_LABELS.get(self.ablation, 'ablation: ' + self.ablation)})"

    @property
    def base(self) -> RowKey:
        return RowKey(self.method)


@dataclass
class Row:
    key: RowKey
    accuracy: dict[int, float] = field(default_factory=dict)  # seed -> test accuracy, done trials
    unfinished: Counter = field(default_factory=Counter)  # status -> count (failed, diverged, running)
    records: list[dict] = field(default_factory=list)
    reference: bool = False  # the dense reference (sparsity 0, a method that keeps every weight): never competes
    summary: Summary | None = None
    comparison: Comparison | None = None  # against the best, or against its unablated method
    verdict: str | None = None  # best | tied | worse | not testable; ablations: same | lower | higher | not testable


class Group(NamedTuple):
    """What one leaderboard table covers: a suite's model on a dataset (and the suite's named
    cell, for suites that have several, e.g. one per transfer dataset)."""

    suite: str
    cell: str | None
    model: str
    dataset: str

    @property
    def label(self) -> str:
        where = f"{self.suite} / {self.cell}" if self.cell else self.suite
        return f"{where}: {self.model} on {self.dataset}"

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.suite, self.cell or "", self.model, self.dataset)


@dataclass
class Cell:
    """One (suite, model, dataset, sparsity): the rows that compete there."""

    group: Group
    sparsity: float
    rows: dict[RowKey, Row] = field(default_factory=dict)
    best: RowKey | None = None
    prob_improvement: dict[tuple[RowKey, RowKey], float] = field(default_factory=dict)  # P(a > b)

    @property
    def reference(self) -> bool:
        """Only reference rows: the dense model's cell."""
        return all(row.reference for row in self.rows.values())

    @property
    def competitors(self) -> list[RowKey]:
        """Rows that compete for best: not the reference, not ablations, with a finished seed."""
        return [k for k, row in self.rows.items() if not k.ablation and not row.reference and row.summary and row.summary.n]


def analyse_cell(cell: Cell, alpha: float = ALPHA, paired_test: str = "ttest") -> Cell:
    """Fill in the cell's summaries, best row, tests (Holm within the cell) and verdicts.

    Ablation rows are tested against their own unablated method, as a second Holm family:
    they answer a different question than "which method is best".
    """
    for row in cell.rows.values():
        row.summary = summarize([row.accuracy[s] for s in sorted(row.accuracy)])
    for a in cell.rows:
        for b in cell.rows:
            if a != b:
                p = probability_of_improvement(list(cell.rows[a].accuracy.values()), list(cell.rows[b].accuracy.values()))
                if p is not None:
                    cell.prob_improvement[(a, b)] = p
    competitors = cell.competitors
    if competitors:
        # Highest mean; equal means resolve by name so the choice is deterministic.
        cell.best = min(competitors, key=lambda k: (-cell.rows[k].summary.mean, k.label))
        best = cell.rows[cell.best]
        best.verdict = BEST
        others = [k for k in competitors if k != cell.best]
        tests = holm(
            [compare(cell.rows[k].accuracy, best.accuracy, paired_test, (k.label, cell.best.label)) for k in others],
            alpha,
        )
        for k, comparison in zip(others, tests):
            cell.rows[k].comparison = comparison
            cell.rows[k].verdict = NOT_TESTABLE if not comparison.testable else (WORSE if comparison.reject else TIED)
    ablated = [k for k in cell.rows if k.ablation and k.base in cell.rows and cell.rows[k].accuracy]
    tests = holm(
        [compare(cell.rows[k].accuracy, cell.rows[k.base].accuracy, paired_test, (k.label, k.base.label)) for k in ablated],
        alpha,
    )
    for k, comparison in zip(ablated, tests):
        row = cell.rows[k]
        row.comparison = comparison
        if not comparison.testable:
            row.verdict = NOT_TESTABLE
        elif not comparison.reject:
            row.verdict = SAME
        else:
            row.verdict = LOWER if row.summary.mean < cell.rows[k.base].summary.mean else HIGHER
    return cell


# --- records -> cells ----------------------------------------------------------------------


def is_reference(method: str, sparsity: float) -> bool:
    """A dense reference trial: sparsity 0 by a method that keeps every weight."""
    if sparsity != 0.0:
        return False
    try:
        from pai_bench.plugins import method_class

        return bool(getattr(method_class(method), "keeps_everything", False))
    except Exception:  # a plugin that is not installed here: fall back on the built-in name
        return method == "dense"


def record_group(record: Mapping[str, Any]) -> Group:
    cell = record.get("cell")
    return Group(
        str(record.get("suite") or "custom"),
        None if cell is None else str(cell),
        str(record.get("model") or "?"),
        str(record.get("dataset") or "?"),
    )


def record_row_name(record: Mapping[str, Any]) -> str:
    """The row a record belongs to: its `row` (a method or a variant's name,
    `pai_bench.variants`); records from before variants have only their method."""
    return str(record.get("row") or record.get("method"))


def is_prune_only(record: Mapping[str, Any]) -> bool:
    """A trial that pruned and trained nothing (`train.epochs=0`): its figures are the mask's."""
    return ((record.get("config") or {}).get("train") or {}).get("epochs") == 0


def record_row(record: Mapping[str, Any]) -> RowKey:
    return RowKey(record_row_name(record), record.get("ablation") or None)


def cell_key(record: Mapping[str, Any]) -> tuple[Group, float]:
    return (record_group(record), float(record.get("sparsity") or 0.0))


def collect_cells(records: Iterable[Mapping[str, Any]]) -> dict[tuple[Group, float], Cell]:
    """Group trial records into cells and rows; done trials give accuracies, the others counts.

    Two done trials of the same row and seed cannot both be right (records of two protocols
    in one folder): that is a UserError naming them.
    """
    cells: dict[tuple[Group, float], Cell] = {}
    for record in records:
        key = cell_key(record)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell(*key)
        row_key = record_row(record)
        row = cell.rows.setdefault(row_key, Row(row_key, reference=not row_key.ablation and is_reference(str(record.get("method")), key[1])))
        row.records.append(dict(record))
        status = record.get("status")
        accuracy = record.get("test_acc")
        if status == "done" and accuracy is not None and math.isfinite(float(accuracy)):
            seed = int(record.get("seed", 0))
            if seed in row.accuracy:
                raise UserError(
                    f"two finished trials of {row_key.label} at sparsity {key[1]:g}, seed {seed} in {key[0].label} "
                    f"(keys {', '.join(str(r.get('key')) for r in row.records if r.get('seed') == seed)}): records of "
                    "different protocols in one set; make the leaderboard from the records of one protocol"
                )
            row.accuracy[seed] = float(accuracy)
        else:
            row.unfinished[str(status if status != "done" else "no accuracy")] += 1
    return cells


@dataclass
class Analysis:
    cells: dict[tuple[Group, float], Cell]
    ranking: Ranking
    alpha: float
    paired_test: str

    def frame(self):
        """One row per (cell, row): n, mean, std, intervals, test, p, p (Holm), verdict."""
        import pandas as pd

        rows = []
        for cell in self.cells.values():
            for key, row in cell.rows.items():
                s, c = row.summary, row.comparison
                rows.append(
                    {
                        "suite": cell.group.suite,
                        "cell": cell.group.cell,
                        "model": cell.group.model,
                        "dataset": cell.group.dataset,
                        "sparsity": cell.sparsity,
                        "method": key.method,
                        "ablation": key.ablation,
                        "n": s.n,
                        **{status: count for status, count in row.unfinished.items()},
                        "mean": s.mean,
                        "std": s.std,
                        "ci_low": s.ci[0] if s.ci else None,
                        "ci_high": s.ci[1] if s.ci else None,
                        "boot_low": s.ci_bootstrap[0] if s.ci_bootstrap else None,
                        "boot_high": s.ci_bootstrap[1] if s.ci_bootstrap else None,
                        "against": c.against if c else None,
                        "test": c.test if c else None,
                        "p": c.p if c else None,
                        "p_holm": c.p_holm if c else None,
                        "prob_improvement": c.prob_improvement if c else None,
                        "verdict": row.verdict or ("reference" if row.reference else None),
                    }
                )
        return pd.DataFrame(rows)


def analyse(records: Iterable[Mapping[str, Any]], alpha: float = ALPHA, paired_test: str = "ttest") -> Analysis:
    """Everything the leaderboard shows, from trial records."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    cells = collect_cells(records)
    for cell in cells.values():
        analyse_cell(cell, alpha, paired_test)
    return Analysis(cells, rank_methods(cells.values()), alpha, paired_test)


# --- across cells --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranking:
    """Methods compared over the cells where all of them have a mean.

    `normalised_by` says what accuracy was divided by: the dense reference of the cell's
    (suite, model, dataset), or the cell's best mean where some group has no dense run.
    """

    methods: tuple[str, ...]
    cells: int
    mean_rank: dict[str, float]
    iqm: dict[str, float]
    normalised_by: str
    friedman_statistic: float | None = None
    friedman_p: float | None = None
    reason: str | None = None  # why Friedman is not testable
    friedman_floor: float | None = None  # the smallest p any ranking of these cells can give


def interquartile_mean(values: Sequence[float]) -> float:
    """The mean of the middle 50 % (scipy's trim_mean at 25 %, as rliable's IQM)."""
    return float(sps.trim_mean(np.asarray(values, dtype=float), 0.25))


def rank_methods(cells: Iterable[Cell]) -> Ranking:
    """Mean rank (1 = best mean in a cell, ties averaged), IQM of normalised per-seed accuracy,
    and a Friedman test, over the cells that hold every competing method."""
    cells = list(cells)
    dense: dict[tuple, float] = {}
    for cell in cells:
        values = [a for row in cell.rows.values() if row.reference for a in row.accuracy.values()]
        if values:
            dense[cell.group] = float(np.mean(values))
    compared = [c for c in cells if c.competitors]
    methods = sorted({k.method for c in compared for k in c.competitors})
    complete = [c for c in compared if {k.method for k in c.competitors} == set(methods)]
    by_dense = all(c.group in dense for c in complete)
    normalised_by = "dense accuracy of the same model and dataset" if by_dense else "the best mean of the cell"
    mean_rank: dict[str, float] = {}
    iqm: dict[str, float] = {}
    if complete:
        means = np.array([[c.rows[RowKey(m)].summary.mean for m in methods] for c in complete])
        ranks = np.array([sps.rankdata(-row) for row in means])
        mean_rank = {m: float(r) for m, r in zip(methods, ranks.mean(axis=0))}
        for m in methods:
            scores = []
            for c in complete:
                scale = dense[c.group] if by_dense else c.rows[c.best].summary.mean
                if scale > 0:  # a reference at 0 % (a net that learned nothing) normalises nothing
                    scores += [100.0 * a / scale for a in c.rows[RowKey(m)].accuracy.values()]
            if scores:
                iqm[m] = interquartile_mean(scores)
    ranking = dict(methods=tuple(methods), cells=len(complete), mean_rank=mean_rank, iqm=iqm, normalised_by=normalised_by)
    if len(methods) >= 3 and complete:
        # Every cell ranking the methods alike gives the largest statistic, N (k - 1).
        ranking["friedman_floor"] = float(sps.chi2.sf(len(complete) * (len(methods) - 1), len(methods) - 1))
    if len(methods) < 3:
        return Ranking(**ranking, reason=f"{len(methods)} methods; it needs 3 or more")
    if len(complete) < 2:
        return Ranking(**ranking, reason=f"{len(complete)} cells hold every method; it needs 2 or more")
    if np.all(means == means[:, :1]):
        return Ranking(**ranking, reason="identical values")
    result = sps.friedmanchisquare(*means.T)
    if not np.isfinite(result.pvalue):
        return Ranking(**ranking, reason="identical ranks")
    return Ranking(**ranking, friedman_statistic=float(result.statistic), friedman_p=float(result.pvalue))


# --- what a seed count can detect ----------------------------------------------------------


@dataclass(frozen=True)
class Detectable:
    """What `n` seeds per method can show at `alpha` (two-sided), for one comparison.

    `paired_effect`: the mean per-seed difference a paired t-test detects with probability
    `power`, in standard deviations of the differences (Cohen's d_z); `welch_effect`: the
    same for two independent groups of n, in pooled standard deviations (statsmodels'
    power solvers, the t-test with equal variances standing in for Welch's). The minimum
    p-values are those of the most extreme outcome (one method better on every seed), the
    floor no data can go below: Wilcoxon signed-rank 2 / 2^n, Mann-Whitney 2 / C(2n, n).
    """

    n: int
    alpha: float
    power: float
    paired_effect: float | None
    welch_effect: float | None
    min_p_wilcoxon: float | None
    min_p_mannwhitney: float | None


def detectable(n: int, alpha: float = ALPHA, power: float = 0.8) -> Detectable:
    if n < 2:
        return Detectable(n, alpha, power, None, None, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paired = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power)
        welch = TTestIndPower().solve_power(effect_size=None, nobs1=n, ratio=1.0, alpha=alpha, power=power)
    ranks = np.arange(1.0, n + 1)
    return Detectable(
        n=n,
        alpha=alpha,
        power=power,
        paired_effect=_finite(paired),
        welch_effect=_finite(welch),
        min_p_wilcoxon=float(sps.wilcoxon(ranks, method="exact").pvalue),
        min_p_mannwhitney=float(sps.mannwhitneyu(ranks + n, ranks, method="exact").pvalue),
    )


# --- helpers -------------------------------------------------------------------------------


def _tolerance(x: np.ndarray) -> float:
    # Accuracies are percentages with ~0.01 resolution; differences of float round-off are not data.
    return 1e-9 * max(1.0, float(np.max(np.abs(x))) if len(x) else 1.0)


def _constant(x: np.ndarray) -> bool:
    return len(x) > 0 and float(np.ptp(x)) <= _tolerance(x)


def _finite(value: Any) -> float | None:
    value = float(np.asarray(value).item())
    return value if math.isfinite(value) else None
