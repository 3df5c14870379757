"""The reports of a results folder cover every trial of its protocol, not the last command's."""

from __future__ import annotations

from tests.runner.quick_trials import SMALL

from pai_bench.config import load_config
from pai_bench.pages import load_run_records
from pai_bench.runner import run_suite
from pai_bench.report_scope import PREVIOUS_CONFIG_FILE, union
from pai_bench.store import ResultStore


def run(out, *overrides: str):
    return run_suite(load_config("quickstart", [*SMALL[1:], f"out={out}", *overrides]), progress=False)


def test_a_run_over_a_subset_adds_to_the_reports_instead_of_narrowing_them(tmp_path):
    run(tmp_path, "methods=[random]")
    summary = run(tmp_path, "methods=[magnitude]")
    assert summary.trials == 1 and summary.reported == 2 and summary.replaced == 0
    results = (tmp_path / "results.md").read_text()
    assert "| random " in results and "| magnitude " in results
    leaderboard = (tmp_path / "leaderboard.md").read_text()
    assert "| random " in leaderboard and "| magnitude " in leaderboard
    config = load_config(str(tmp_path / "config.yaml"))
    assert config.methods == ["random", "magnitude"]
    assert {r["method"] for r in load_run_records(tmp_path)} == {"random", "magnitude"}


def test_trials_of_the_widened_grid_with_no_record_count_as_missing(tmp_path):
    run(tmp_path, "methods=[random]")
    run(tmp_path, "methods=[magnitude]", "sparsities=[0.9]")
    records = load_run_records(tmp_path)
    missing = sorted((r["method"], r["sparsity"]) for r in records if r["status"] == "missing")
    assert missing == [("magnitude", 0.5), ("random", 0.9)]
    assert "1 missing" in (tmp_path / "results.md").read_text()
    details = (tmp_path / "leaderboard.md").read_text()
    assert "| 1 missing " in details or "1 missing |" in details


def test_another_protocol_replaces_the_grid_and_says_how_to_get_it_back(tmp_path):
    run(tmp_path, "methods=[random]")
    first = (tmp_path / "config.yaml").read_text()
    summary = run(tmp_path, "methods=[magnitude]", "train.epochs=2")
    assert summary.replaced == 1 and summary.previous_config == tmp_path / PREVIOUS_CONFIG_FILE
    assert summary.previous_config.read_text() == first
    assert "| random " not in (tmp_path / "results.md").read_text()
    assert len(ResultStore(tmp_path).records()) == 2  # nothing deleted
    again = run_suite(load_config(str(summary.previous_config), ["executor=local"]), progress=False)
    assert again.counts == {"skipped": 1} and "| random " in (tmp_path / "results.md").read_text()


def test_an_earlier_row_gives_way_to_a_variant_that_runs_the_same_trials(tmp_path):
    run(tmp_path, "methods=[magnitude,snip]")
    summary = run(tmp_path, "methods=[snip-eval]", "variants.snip-eval.method=snip", "variants.snip-eval.bn_mode=eval")
    assert summary.counts == {"skipped": 1} and summary.replaced == 0
    config = load_config(str(tmp_path / "config.yaml"))  # loads: no two rows of one content
    assert config.methods == ["magnitude", "snip-eval"]
    assert {r["row"] for r in load_run_records(tmp_path)} == {"magnitude", "snip-eval"}


def test_an_earlier_row_whose_options_the_new_run_changes_leaves_the_grid(tmp_path):
    """`px.rounds=2` in the new run would turn the earlier `px` row into trials nobody ran."""
    run(tmp_path, "methods=[px]", "px.rounds=1")
    summary = run(tmp_path, "methods=[pxu]", "variants.pxu.method=px", "variants.pxu.variant=uniform", "px.rounds=2")
    assert summary.replaced == 1
    assert load_config(str(tmp_path / "config.yaml")).methods == ["pxu"]


def test_a_refused_run_leaves_the_reported_grid_as_it_was(tmp_path):
    import pytest

    from pai_bench.errors import UserError

    run(tmp_path, "methods=[random]")
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(UserError, match="keeps round"):
        run(tmp_path, "methods=[random]", "sparsities=[0.9999999]")
    assert (tmp_path / "config.yaml").read_text() == before


def test_a_cut_both_runs_make_stays_out_of_the_reports_and_one_only_one_makes_does_not(tmp_path):
    cut = "cuts=[{rows: [magnitude], sparsities: [0.9]}]"
    run(tmp_path, "methods=[random,magnitude]", "sparsities=[0.5,0.9]", cut)
    summary = run(tmp_path, "methods=[random]", "sparsities=[0.5,0.9]", cut)
    assert summary.reported == 3
    records = load_run_records(tmp_path)
    assert sorted((r["row"], r["sparsity"], r["status"]) for r in records) == [
        ("magnitude", 0.9, "done"), ("random", 0.5, "done"), ("random", 0.9, "done")
    ]
    assert "Cut to fit: magnitude: only sparsity 90 %." in (tmp_path / "leaderboard.md").read_text()
    run(tmp_path, "methods=[random]", "sparsities=[0.5,0.9]")
    missing = [(r["row"], r["sparsity"]) for r in load_run_records(tmp_path) if r["status"] == "missing"]
    assert missing == [("magnitude", 0.5)]
    assert "Cut to fit" not in (tmp_path / "leaderboard.md").read_text()


def test_the_union_of_runs_split_by_cells_keeps_each_cell_s_cuts():
    grid = ["methods=[dense,snip]", "sparsities=[0.5,0.9]", "seeds=2", "cuts=[{rows: [snip], cells: [cifar100], seeds: 1}]"]
    first = load_config("transfer", [*grid, "cells=[cifar10]"])
    second = load_config("transfer", [*grid, "cells=[cifar100]"])
    merged = union(first, second)
    assert set(merged.cells) == {"cifar10", "cifar100"}
    assert [(cut.cells, cut.seeds) for cut in merged.cuts] == [(["cifar100"], 1)]
    uncut = load_config("transfer", ["methods=[dense,snip]", "sparsities=[0.5,0.9]", "seeds=2", "cells=[cifar100]"])
    assert union(second, uncut).cuts == [] and union(uncut, second).cuts == []
