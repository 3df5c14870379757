"""The published references: the shipped file loads and names its sources, cells find their
numbers through dataset aliases and rounding of sparsities, and the rank agreement is Kendall's
tau over the methods both sides have."""

from __future__ import annotations

import pytest

from pai_bench.references import load_references, published_by_method, rank_agreement, seed_rank_agreement


def test_the_shipped_references_load_with_a_source_for_every_number():
    references = load_references()
    assert references.results and all(result.source in references.sources for result in references.results)
    assert all(0 <= result.sparsity < 1 for result in references.results)
    for source in references.sources.values():
        assert source.cite and source.where and source.protocol and source.verified
        assert source.value in {"best-epoch", "last-epoch", "unstated"}
        assert source.kind in {"exact", "printed-label", "plot-read"}
        assert (source.kind == "plot-read") == (source.uncertainty is not None)


def test_a_resnet20_cell_on_the_jpegs_finds_cifar10s_published_numbers():
    """cifar10-jpeg compares with cifar10; 0.96838 is the published 96.84 %. The NPB figure's
    labels (shared/references/literature.md, B) are what the cell gets."""
    references = load_references()
    assert references.compares_with("cifar10-jpeg") == "cifar10" and references.compares_with("quickstart") is None
    cell = references.for_cell("resnet20", "cifar10-jpeg", 0.96838)
    npb = published_by_method(cell, "npb-figure")
    assert npb == {"random": 67.56, "snip": 76.72, "iter-snip": 77.05, "synflow": 78.22, "phew": 81.05, "npb": 80.55}
    assert references.for_cell("resnet20", "cifar10-jpeg", 0.97) == []
    assert references.for_cell("resnet56", "cifar10-jpeg", 0.9684) == []


def test_synflow_data_are_the_authors_means_over_three_seeds():
    cell = load_references().for_cell("vgg16-bn", "cifar10", 0.99)
    synflow = [result for result in cell if result.source == "synflow-data" and result.method == "synflow"]
    assert [(r.accuracy, r.std) for r in synflow] == [(90.08, 0.08)]


def test_rank_agreement_is_kendall_tau_over_shared_methods():
    ours = {"a": 90.0, "b": 80.0, "c": 70.0, "d": 60.0, "only-ours": 1.0}
    same = {"a": 9.0, "b": 8.0, "c": 7.0, "d": 6.0, "only-theirs": 5.0}
    assert rank_agreement(ours, same).tau == pytest.approx(1.0)
    assert rank_agreement(ours, same).methods == ("a", "b", "c", "d")
    reversed_order = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    assert rank_agreement(ours, reversed_order).tau == pytest.approx(-1.0)
    one_swap = {"a": 9.0, "b": 7.0, "c": 8.0, "d": 6.0}  # 5 of 6 pairs agree: (5 - 1) / 6
    assert rank_agreement(ours, one_swap).tau == pytest.approx(4 / 6)
    assert rank_agreement(ours, {"a": 1.0, "b": 2.0, "c": None}).tau is None  # two methods only


def test_seed_agreement_is_the_mean_tau_over_pairs_of_seeds():
    by_seed = {
        0: {"a": 3.0, "b": 2.0, "c": 1.0},
        1: {"a": 3.0, "b": 2.0, "c": 1.0},
        2: {"a": 1.0, "b": 2.0, "c": 3.0},
    }
    assert seed_rank_agreement(by_seed) == pytest.approx((1 - 1 - 1) / 3)
    assert seed_rank_agreement({0: by_seed[0]}) is None


def _record(row: str, sparsity: float, seed: int, accuracy: float, **extra) -> dict:
    return {"status": "done", "model": "resnet20", "dataset": "cifar10-jpeg", "row": row, "sparsity": sparsity, "seed": seed, "test_acc": accuracy} | extra


def test_a_run_is_compared_with_the_sources_that_cover_its_cells():
    from pai_bench.references import compare_with_published

    # NPB at 99 %: random 35.99 < snip 62.43 < iter-snip 64.95 < synflow 66.05 < phew 70.44
    ours = {"random": [30, 31], "snip": [50, 52], "iter-snip": [55, 54], "synflow": [53, 56], "phew": [60, 58], "px-uniform": [61, 62]}
    records = [_record(row, 0.99, seed, acc) for row, accs in ours.items() for seed, acc in enumerate(accs)]
    records += [_record("snip", 0.99, 2, 99.0, ablation="shuffle"), _record("snip", 0.99, 3, 99.0, status="failed")]
    records += [_record("random", 0.5, 0, 80.0)]  # no source covers 50 %
    [cell] = compare_with_published(records)
    assert (cell.model, cell.dataset, cell.sparsity) == ("resnet20", "cifar10-jpeg", 0.99)
    [npb] = [source for source in cell.sources if source.source.name == "npb-figure"]
    assert npb.agreement.methods == ("iter-snip", "phew", "random", "snip", "synflow")
    # means: random 30.5, snip 51, iter-snip 54.5, synflow 54.5, phew 59 -> one tie, otherwise NPB's order
    assert 0.9 < npb.agreement.tau < 1.0
    assert npb.seed_agreement == pytest.approx(rank_agreement(
        {"random": 30, "snip": 50, "iter-snip": 55, "synflow": 53, "phew": 60},
        {"random": 31, "snip": 52, "iter-snip": 54, "synflow": 56, "phew": 58}).tau)


def test_records_from_before_rows_were_named_compare_under_their_method():
    from pai_bench.references import compare_with_published

    records = [{k: v for k, v in _record(row, 0.99, 0, acc).items() if k != "row"} | {"method": row} for row, acc in (("random", 30.0), ("snip", 50.0), ("phew", 60.0))]
    [cell] = compare_with_published(records)
    [npb] = [source for source in cell.sources if source.source.name == "npb-figure"]
    assert npb.agreement.methods == ("phew", "random", "snip") and npb.agreement.tau == pytest.approx(1.0)
