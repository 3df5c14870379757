"""The grid with ablations and variants: one more trial per mask method, sparsity, seed (and
cell), in seed-major order, the plain trials exactly as without them, a row's name out of the key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pai_bench.config import load_config
from pai_bench.pages import cut_notes
from pai_bench.grid import describe_cuts, expand_grid
from tests.conftest import assert_config_error

QUICK = ["methods=[dense,magnitude,snip,scratch-e]", "sparsities=[0.5,0.9]", "seeds=2"]


def test_each_ablation_adds_a_trial_per_mask_method_sparsity_and_seed():
    plain = expand_grid(load_config("quickstart", QUICK))
    specs = expand_grid(load_config("quickstart", [*QUICK, "ablations=[shuffle,invert]"]))
    assert len(plain) == 2 * (1 + 3 * 2)
    # dense and scratch-e choose no mask by scores: only magnitude and snip are ablated.
    ablated = [s for s in specs if s.ablation]
    assert len(ablated) == 2 * 2 * 2 * 2  # seeds x ablations x methods x sparsities
    assert {s.method for s in ablated} == {"magnitude", "snip"}
    assert {(s.method, s.ablation, s.sparsity, s.seed) for s in ablated} == {
        (m, a, p, seed) for m in ("magnitude", "snip") for a in ("shuffle", "invert") for p in (0.5, 0.9) for seed in (0, 1)
    }
    # The plain trials are the same trials (same keys, same order) as without ablations.
    assert [s.key for s in specs if not s.ablation] == [s.key for s in plain]
    assert len({s.key for s in specs}) == len(specs)
    # Seed-major: every trial of seed 0, ablated ones included, before any of seed 1.
    seeds = [s.seed for s in specs]
    assert seeds == sorted(seeds)


def test_ablations_run_in_every_cell():
    specs = expand_grid(load_config("transfer", ["methods=[dense,snip]", "sparsities=[0.9]", "seeds=2", "ablations=[reinit]"]))
    assert len(specs) == 2 * 3 * (1 + 1 + 1)  # seeds x cells x (dense, snip, snip reinit)
    assert {(s.cell, s.seed) for s in specs if s.ablation == "reinit"} == {
        (cell, seed) for cell in ("cifar10", "cifar100", "tinyimagenet") for seed in (0, 1)
    }


def test_diagnostics_reach_every_trial_and_leave_the_keys():
    plain = expand_grid(load_config("quickstart", QUICK))
    measured = expand_grid(load_config("quickstart", [*QUICK, "diagnostics.ntk=true", "diagnostics.ntk_examples=4"]))
    assert all(s.diagnostics.ntk and s.diagnostics.ntk_examples == 4 for s in measured)
    assert [s.key for s in measured] == [s.key for s in plain]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["ablations=[shuffle,flip]"], r"^unknown ablation 'flip'; valid choices: invert, reinit, shuffle$"),
        (["methods=[dense,scratch-e]", "ablations=[shuffle]"], r"ablation 'shuffle' applies to none of methods=\['dense', 'scratch-e'\]"),
        (["diagnostics.ntk_examples=0"], r"diagnostics.ntk_examples=0: need at least one example"),
        (["prune.batch_size=0"], r"prune.batch_size=0: must be positive"),
        (["diagnostics.bogus=1"], r"unknown key 'diagnostics.bogus'; valid keys of diagnostics: ntk, ntk_examples"),
    ],
)
def test_bad_ablations_and_diagnostics_are_one_line_errors(overrides, message):
    assert_config_error("quickstart", overrides, message)


# --- variants: rows of their own, keyed by their content ------------------------------------

VARIANT_ROWS = ["methods=[dense,px,px-uniform,snip-train]", "sparsities=[0.5,0.9]", "seeds=2"]


def test_variant_rows_run_their_base_method_with_their_options():
    specs = expand_grid(load_config("quickstart", VARIANT_ROWS))
    assert len(specs) == 2 * (1 + 3 * 2)
    first = {s.row_name: s for s in specs if s.seed == 0 and s.sparsity == 0.9}
    assert {name: (s.method, s.options.get("variant", s.options.get("bn_mode"))) for name, s in first.items()} == {
        "px": ("px", "authors"),
        "px-uniform": ("px", "uniform"),
        "snip-train": ("snip", "train"),
    }
    assert first["px-uniform"].label == "px-uniform, s=0.9, seed=0"
    assert len({s.key for s in specs}) == len(specs)


def test_a_row_s_name_is_not_in_the_key():
    specs = expand_grid(load_config("quickstart", VARIANT_ROWS))
    renamed = expand_grid(
        load_config("quickstart", ["methods=[dense,px,pk-eval,bn-train]", "variants.pk-eval={method: px, variant: uniform}",
                                   "variants.bn-train={method: snip, bn_mode: train}", "sparsities=[0.5,0.9]", "seeds=2"])
    )  # fmt: skip
    assert [s.key for s in renamed] == [s.key for s in specs]
    assert [s.row_name for s in renamed if s.seed == 0 and s.sparsity == 0.9] == ["px", "pk-eval", "bn-train"]
    # A variant is the trial its base method with those options is: listed as a method with
    # the same options, it has the same key; a plain method's key does not depend on `row`.
    as_options = expand_grid(load_config("quickstart", ["methods=[snip]", "snip.bn_mode=train", "sparsities=[0.5,0.9]", "seeds=2"]))
    assert [s.key for s in as_options] == [s.key for s in specs if s.row_name == "snip-train"]
    assert all(replace(s, row=None).key == s.key for s in specs)


CUT = "cuts=[{rows: [snip], cells: [cifar100], sparsities: [0.9], seeds: 1, why: too slow}]"


def test_a_cut_leaves_out_a_row_s_other_sparsities_and_seeds_in_its_cells_only():
    grid = ["methods=[dense,magnitude,snip]", "sparsities=[0.5,0.9]", "seeds=2"]
    full = expand_grid(load_config("transfer", grid))
    cut = expand_grid(load_config("transfer", [*grid, CUT]))
    left_out = {(s.row_name, s.cell, s.sparsity, s.seed) for s in full} - {(s.row_name, s.cell, s.sparsity, s.seed) for s in cut}
    assert left_out == {("snip", "cifar100", 0.5, 0), ("snip", "cifar100", 0.5, 1), ("snip", "cifar100", 0.9, 1)}
    assert [s.key for s in cut] == [s.key for s in full if (s.row_name, s.cell, s.sparsity, s.seed) not in left_out]
    # a cut of seeds only also removes a dense row's later seeds
    dense_cut = expand_grid(load_config("transfer", [*grid, "cuts=[{rows: [dense], seeds: 1}]"]))
    assert {s.seed for s in dense_cut if s.row_name == "dense"} == {0}


def test_a_cut_names_what_it_keeps_and_why():
    config = load_config("transfer", ["methods=[dense,snip]", "sparsities=[0.5,0.9]", "seeds=2", CUT])
    assert describe_cuts(config.cuts) == ["snip on cifar100: only sparsity 90 % and seed 0 (too slow)"]
    assert cut_notes(config) == ["Cut to fit: snip on cifar100: only sparsity 90 % and seed 0 (too slow)."]


def test_a_cut_may_name_a_cell_the_command_line_leaves_out():
    config = load_config("transfer", ["methods=[dense,snip]", "sparsities=[0.5,0.9]", "seeds=2", CUT, "cells=[cifar10]"])
    assert list(config.cells) == ["cifar10"] and config.cuts == []  # the cut of a cell not run here is dropped


@pytest.mark.parametrize(
    "cut, message",
    [
        ("{rows: [snp]}", r"unknown row \(in cuts\[0\].rows\) 'snp'; valid choices: dense, px-2024, px-uniform, snip, snip-train"),
        ("{cells: [imagenet]}", r"unknown cell \(in cuts\[0\].cells\) 'imagenet'; valid choices: cifar10, cifar100, tinyimagenet"),
        ("{sparsities: [1.5]}", r"cuts\[0\].sparsities has 1.5, outside \(0, 1\)"),
        ("{seeds: -1}", r"cuts\[0\].seeds=-1: need 0 \(every seed\) or the number of seeds"),
    ],
)
def test_a_cut_of_what_the_suite_does_not_have_is_one_line(cut, message):
    assert_config_error("transfer", ["methods=[dense,snip]", "sparsities=[0.5,0.9]", "seeds=2", f"cuts=[{cut}]"], message)


def test_a_run_of_some_cells_keeps_the_cuts_of_those_cells_only():
    cuts = "cuts=[{rows: [snip], cells: [cifar100, tinyimagenet], seeds: 1}, {rows: [snip], cells: [cifar10], seeds: 1}]"
    config = load_config("transfer", ["methods=[dense,snip]", "seeds=2", cuts, "cells=[cifar100]"])
    assert [(cut.cells, cut.seeds) for cut in config.cuts] == [(["cifar100"], 1)]
