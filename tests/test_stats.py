"""Seed-level statistics: known answers against scipy/statsmodels called directly, Holm
decisions built to differ from uncorrected ones, and "not testable" wherever no p can exist."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from pai_bench import stats
from pai_bench.errors import UserError
from pai_bench.stats import Comparison, RowKey

# The example: SynFlow ahead of SNIP on every seed, yet no test at 3 seeds says so.
SYNFLOW = [80.37, 80.32, 80.49]
SNIP = [78.53, 77.17, 73.06]
BEST = [90.0, 90.5, 89.8, 90.2, 90.1]


def by_seed(values, seeds=None):
    return dict(zip(seeds if seeds is not None else range(len(values)), values))


def record(method, sparsity, seed, acc, status="done", **extra):
    return {
        "key": f"{method}-{sparsity}-{seed}-{extra.get('ablation')}",
        "status": status,
        "suite": "s",
        "model": "m",
        "dataset": "d",
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        **({"test_acc": acc} if status == "done" else {}),
        **extra,
    }


# --- summaries -----------------------------------------------------------------------------


def test_summary_matches_numpy_and_the_t_interval():
    s = stats.summarize(BEST)
    assert s.n == 5 and s.mean == pytest.approx(np.mean(BEST)) and s.std == pytest.approx(np.std(BEST, ddof=1))
    low, high = sps.t.interval(0.95, 4, loc=np.mean(BEST), scale=sps.sem(BEST))
    assert s.ci == pytest.approx((low, high))
    # BCa bootstrap from 5 seeds on: inside the data's range, around the mean, reproducible.
    assert s.ci_bootstrap is not None
    assert min(BEST) <= s.ci_bootstrap[0] < s.mean < s.ci_bootstrap[1] <= max(BEST)
    assert stats.summarize(BEST).ci_bootstrap == s.ci_bootstrap


def test_summary_below_five_seeds_has_no_bootstrap_and_one_seed_no_spread():
    assert stats.summarize(SYNFLOW).ci_bootstrap is None and stats.summarize(SYNFLOW).ci is not None
    one = stats.summarize([80.0])
    assert (one.n, one.mean, one.std, one.ci, one.ci_bootstrap) == (1, 80.0, None, None, None)
    assert stats.summarize([]).mean is None
    same = stats.summarize([80.0] * 5)
    assert same.std == 0.0 and same.ci == (80.0, 80.0) and same.ci_bootstrap is None


# --- one comparison ------------------------------------------------------------------------


def test_shared_seeds_are_paired_and_match_ttest_rel():
    c = stats.compare(by_seed(SNIP), by_seed(SYNFLOW))
    expected = sps.ttest_rel(SNIP, SYNFLOW)
    assert c.test == "paired t" and c.p == pytest.approx(expected.pvalue) and c.statistic == pytest.approx(expected.statistic)
    assert c.p == pytest.approx(0.1337, abs=1e-4)  # ahead on every seed, and still p > 0.05
    assert c.prob_improvement == 1.0  # ... which P(SynFlow > SNIP) does say


def test_pairing_follows_seeds_not_order():
    # The same values listed in another seed order must pair the same way.
    row = {2: SNIP[2], 0: SNIP[0], 1: SNIP[1]}
    assert stats.compare(row, by_seed(SYNFLOW)).p == pytest.approx(sps.ttest_rel(SNIP, SYNFLOW).pvalue)


def test_different_seeds_fall_back_to_welch():
    c = stats.compare(by_seed(SNIP, [0, 1, 3]), by_seed(SYNFLOW))
    expected = sps.ttest_ind(SNIP, SYNFLOW, equal_var=False)
    assert c.test == "Welch t" and c.p == pytest.approx(expected.pvalue)
    assert c.p == pytest.approx(0.128, abs=5e-4)  # the figure


def test_wilcoxon_option_matches_scipy():
    a = [1.0, 2.5, 0.3, 4.0, 2.2, 3.1]
    b = [0.0, 0.0, 0.0, 0.0, 0.0, 0.1]
    c = stats.compare(by_seed(a), by_seed(b), paired_test="wilcoxon")
    assert c.test == "Wilcoxon" and c.p == pytest.approx(sps.wilcoxon(np.subtract(a, b)).pvalue)
    assert c.p == pytest.approx(2 / 2**6)  # every difference positive: the exact floor


@pytest.mark.parametrize(
    "row, against, reason",
    [
        (by_seed([80.0]), by_seed([70.0]), "fewer than 2 seeds"),
        (by_seed([80.0, 81.0, 82.0]), by_seed([70.0]), "fewer than 2 seeds"),
        (by_seed([80.0, 81.0]), by_seed([70.0, 73.0], [5, 6]), None),  # Welch on 2 + 2: testable
        # The same difference on every seed: scipy's ttest_rel would say p = 0.
        (by_seed([80.1, 81.2, 79.3]), by_seed([79.1, 80.2, 78.3]), "identical values"),
        (by_seed([80.0, 80.0, 80.0]), by_seed([80.0, 80.0, 80.0]), "identical values"),
        (by_seed([80.0, 80.0]), by_seed([70.0, 70.0], [3, 4]), "identical values"),
    ],
)
def test_not_testable_gives_no_p_value(row, against, reason):
    c = stats.compare(row, against)
    assert c.reason == reason
    assert (c.p is None) == (reason is not None) and c.testable == (reason is None)


def test_wilcoxon_with_no_difference_is_not_testable():
    c = stats.compare(by_seed([1.0, 2.0, 3.0]), by_seed([1.0, 2.0, 3.0]), paired_test="wilcoxon")
    assert c.p is None and c.reason == "identical values"


def test_probability_of_improvement_is_u_over_nm():
    assert stats.probability_of_improvement(SYNFLOW, SNIP) == 1.0
    assert stats.probability_of_improvement(SNIP, SYNFLOW) == 0.0
    assert stats.probability_of_improvement([1.0, 2.0], [2.0, 0.0]) == 0.625  # (1 + 0.5 + 1 + 0) / 4, ties half
    x, y = [3.0, 1.0, 4.0, 1.5], [2.0, 7.0, 1.0]
    assert stats.probability_of_improvement(x, y) == pytest.approx(sps.mannwhitneyu(x, y).statistic / 12)
    assert stats.probability_of_improvement([], y) is None


# --- Holm within a cell --------------------------------------------------------------------


def test_holm_matches_statsmodels_and_skips_untestable():
    ps = [0.01, 0.04, 0.03]
    comparisons = [Comparison(str(i), "best", "paired t", (5, 5), p=p) for i, p in enumerate(ps)]
    comparisons.insert(1, Comparison("x", "best", "paired t", (1, 5), reason="fewer than 2 seeds"))
    out = stats.holm(comparisons, 0.05)
    reject, adjusted, _, _ = multipletests(ps, alpha=0.05, method="holm")
    testable = [c for c in out if c.testable]
    assert [c.reject for c in testable] == list(reject) == [True, False, False]
    assert [c.p_holm for c in testable] == pytest.approx(list(adjusted)) == [0.03, 0.06, 0.06]
    assert out[1].p_holm is None and out[1].reject is None


def cell_of(rows: dict[str, list[float]]) -> stats.Cell:
    cell = stats.Cell(stats.Group("s", None, "m", "d"), 0.9)
    for name, values in rows.items():
        cell.rows[RowKey(name)] = stats.Row(RowKey(name), accuracy=by_seed(values))
    return cell


def test_holm_decides_ties_that_uncorrected_tests_would_call_worse():
    best = np.array(BEST)
    rows = {
        "a": list(best),
        "b": list(best - [3.0, 3.2, 2.9, 3.1, 3.0]),  # far behind
        "c": list(best - [0.3, 0.1, 0.6, 0.2, 0.7]),  # p ~ 0.030
        "d": list(best - [0.4, 0.1, 0.6, 0.05, 0.6]),  # p ~ 0.042
    }
    p = {k: sps.ttest_rel(rows[k], rows["a"]).pvalue for k in "bcd"}
    assert p["b"] < 1e-5 and 0.025 < p["c"] < p["d"] < 0.05  # all three "significant" uncorrected
    cell = stats.analyse_cell(cell_of(rows))
    assert cell.best == RowKey("a") and cell.rows[RowKey("a")].verdict == stats.BEST
    # Holm: b at 3 p < 0.05 rejected; c at 2 p = 0.061 not, and d is not tested further.
    assert {k: cell.rows[RowKey(k)].verdict for k in "bcd"} == {"b": "worse", "c": "tied", "d": "tied"}
    assert cell.rows[RowKey("c")].comparison.p == pytest.approx(p["c"])
    assert cell.rows[RowKey("c")].comparison.p_holm == pytest.approx(2 * p["c"])
    # With two comparisons the same c is rejected at its second step (1 x p < 0.05).
    del rows["d"]
    cell = stats.analyse_cell(cell_of(rows))
    assert cell.rows[RowKey("c")].verdict == "worse"


def test_a_cell_with_one_seed_per_method_is_not_testable():
    cell = stats.analyse_cell(cell_of({"a": [80.0], "b": [70.0]}))
    assert cell.best == RowKey("a")
    b = cell.rows[RowKey("b")]
    assert b.verdict == stats.NOT_TESTABLE and b.comparison.p is None and b.comparison.p_holm is None


def test_equal_means_pick_the_best_by_name():
    cell = stats.analyse_cell(cell_of({"zeta": [80.0, 81.0], "alpha": [81.0, 80.0]}))
    assert cell.best == RowKey("alpha")


# --- records -> cells ----------------------------------------------------------------------


def test_failed_seeds_are_counted_and_break_pairing():
    records = [record("a", 0.9, s, v) for s, v in enumerate(BEST)]
    records += [record("b", 0.9, s, v - 1.0) for s, v in enumerate(BEST[:4])]
    records += [record("b", 0.9, 4, None, status="failed"), record("b", 0.9, 5, None, status="diverged")]
    analysis = stats.analyse(records)
    [cell] = analysis.cells.values()
    b = cell.rows[RowKey("b")]
    assert b.summary.n == 4 and dict(b.unfinished) == {"failed": 1, "diverged": 1}
    assert b.comparison.test == "Welch t"
    assert b.comparison.p == pytest.approx(sps.ttest_ind(np.array(BEST[:4]) - 1.0, BEST, equal_var=False).pvalue)
    frame = analysis.frame()
    assert frame.loc[frame["method"] == "b", "failed"].item() == 1


def test_dense_is_the_reference_not_a_competitor():
    records = [record("dense", 0.0, s, 95.0 + s) for s in range(3)] + [record("a", 0.9, s, 80.0 + s) for s in range(3)]
    cells = stats.analyse(records).cells
    reference = next(c for c in cells.values() if c.sparsity == 0.0)
    assert reference.reference and reference.best is None
    assert next(c for c in cells.values() if c.sparsity == 0.9).best == RowKey("a")
    # A method run at sparsity 0 too shares dense's cell; dense still does not compete there.
    records += [record("a", 0.0, s, 90.0 + s) for s in range(3)]
    zero = next(c for c in stats.analyse(records).cells.values() if c.sparsity == 0.0)
    assert not zero.reference and zero.competitors == [RowKey("a")] and zero.best == RowKey("a")
    assert zero.rows[RowKey("dense")].reference and zero.rows[RowKey("dense")].comparison is None


def test_ablations_are_tested_against_their_own_method():
    base = [88.5, 88.3, 88.7, 88.2, 88.4]
    shuffled = [88.1, 87.9, 88.4, 87.9, 88.0]
    records = [record("snip", 0.9, s, v) for s, v in enumerate(base)]
    records += [record("snip", 0.9, s, v, ablation="shuffle") for s, v in enumerate(shuffled)]
    records += [record("synflow", 0.9, s, v + 0.1) for s, v in enumerate(base)]
    [cell] = stats.analyse(records).cells.values()
    ablated = cell.rows[RowKey("snip", "shuffle")]
    assert ablated.key.label == "snip (shuffled)" and RowKey("snip", "warp").label == "snip (ablation: warp)"
    assert cell.best == RowKey("synflow")  # the ablation does not compete
    assert ablated.comparison.against == "snip" and ablated.comparison.test == "paired t"
    assert ablated.comparison.p == pytest.approx(sps.ttest_rel(shuffled, base).pvalue)
    assert ablated.verdict == stats.LOWER


def test_two_done_trials_of_one_seed_are_a_user_error():
    records = [record("a", 0.9, 0, 80.0), {**record("a", 0.9, 0, 81.0), "key": "other"}]
    with pytest.raises(UserError, match="two finished trials of a at sparsity 0.9, seed 0"):
        stats.analyse(records)


# --- across cells --------------------------------------------------------------------------


def test_mean_rank_iqm_and_friedman_match_scipy():
    means = {0.5: [90.0, 89.0, 85.0], 0.8: [85.0, 86.0, 80.0], 0.9: [80.0, 78.0, 70.0], 0.95: [75.0, 70.0, 60.0]}
    records = [record("dense", 0.0, s, 100.0) for s in range(2)]
    for sparsity, values in means.items():
        for method, value in zip("abc", values):
            records += [record(method, sparsity, 0, value - 0.5), record(method, sparsity, 1, value + 0.5)]
    ranking = stats.analyse(records).ranking
    assert ranking.methods == ("a", "b", "c") and ranking.cells == 4
    assert ranking.mean_rank == {"a": 1.25, "b": 1.75, "c": 3.0}
    table = np.array(list(means.values()))
    expected = sps.friedmanchisquare(*table.T)
    assert ranking.friedman_statistic == pytest.approx(expected.statistic) and ranking.friedman_p == pytest.approx(expected.pvalue)
    assert ranking.friedman_floor == pytest.approx(sps.chi2.sf(4 * 2, 2))
    # Normalised by dense (100 %): the IQM of a's 8 per-seed scores is scipy's 25 % trimmed mean.
    scores = [v + d for v in table[:, 0] for d in (-0.5, 0.5)]
    assert ranking.normalised_by.startswith("dense") and ranking.iqm["a"] == pytest.approx(sps.trim_mean(scores, 0.25))


def test_friedman_needs_three_methods_and_two_cells():
    two = [record(m, 0.9, s, 80.0 + s + (m == "a")) for m in "ab" for s in range(3)]
    ranking = stats.analyse(two).ranking
    assert ranking.friedman_p is None and "it needs 3" in ranking.reason
    one_cell = [record(m, 0.9, s, 80.0 + s + "abc".index(m)) for m in "abc" for s in range(3)]
    ranking = stats.analyse(one_cell).ranking
    assert ranking.friedman_p is None and "1 cells" in ranking.reason
    assert not ranking.normalised_by.startswith("dense")  # no dense run: the cell's best


# --- what n seeds can detect ---------------------------------------------------------------


def test_detectable_effects_and_p_floors():
    three = stats.detectable(3)
    assert three.min_p_mannwhitney == pytest.approx(0.1) and three.min_p_wilcoxon == pytest.approx(0.25)
    assert sps.mannwhitneyu(SYNFLOW, SNIP).pvalue == pytest.approx(three.min_p_mannwhitney)  # the case hits the floor
    five = stats.detectable(5)
    assert five.min_p_wilcoxon == pytest.approx(0.0625) and five.min_p_mannwhitney == pytest.approx(2 / 252)
    assert five.paired_effect == pytest.approx(TTestPower().solve_power(nobs=5, alpha=0.05, power=0.8))
    assert five.welch_effect == pytest.approx(TTestIndPower().solve_power(nobs1=5, alpha=0.05, power=0.8))
    assert 1.6 < five.paired_effect < 1.8 and five.paired_effect < three.paired_effect
    assert stats.detectable(1).paired_effect is None and stats.detectable(1).min_p_wilcoxon is None


def test_a_cell_whose_best_mean_is_zero_leaves_the_normalised_scores():
    """A net that learned nothing (0 % everywhere in a cell) normalises nothing: the ranking
    leaves that cell out of the IQM instead of dividing by zero."""
    from pai_bench.stats import analyse, rank_methods

    records = [
        {"status": "done", "suite": "s", "model": "m", "dataset": "d", "method": method, "row": method, "sparsity": sparsity, "seed": seed, "test_acc": acc, "config": {"train": {"epochs": 1}}}
        for sparsity, accs in ((0.5, {"a": 50.0, "b": 40.0, "c": 30.0}), (0.9, {"a": 0.0, "b": 0.0, "c": 0.0}))
        for method, acc in accs.items()
        for seed in (0, 1)
    ]
    ranking = rank_methods(analyse(records).cells.values())
    assert ranking.iqm == {"a": 100.0, "b": 80.0, "c": 60.0}
