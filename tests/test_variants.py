"""Method variants: rows of their own for a method with other options, defined in a suite or on
the command line; how their options stack with the base method's section; the one-line errors."""

from __future__ import annotations

import pytest

from pai_bench.config import load_config
from pai_bench.errors import UserError
from pai_bench.grid import expand_grid
from pai_bench.variants import label_rows, method_options, suite_rows
from tests.conftest import assert_config_error

PX_ROWS = ["methods=[px,px-uniform]", "seeds=1", "sparsities=[0.9]"]


def test_quickstart_defines_variants_that_run_only_when_listed():
    config = load_config("quickstart")
    assert config.variants == {
        "snip-train": {"method": "snip", "bn_mode": "train"},
        "px-uniform": {"method": "px", "variant": "uniform"},
        "px-2024": {"method": "px", "variant": "release-2024"},
    }
    assert list(suite_rows(config)) == ["dense", "random", "magnitude", "snip"]
    rows = suite_rows(load_config("quickstart", ["methods=[snip,snip-train]"]))
    assert (rows["snip-train"].method, rows["snip-train"].options) == ("snip", {"bn_mode": "train", "rounds": 1})
    assert rows["snip"].options["bn_mode"] == "eval" and not rows["snip"].is_variant and rows["snip-train"].is_variant


def test_a_variant_is_defined_on_the_command_line_in_either_form():
    dotted = load_config("quickstart", ["variants.iter1.method=iter-snip", "variants.iter1.rounds=1", "methods=[iter-snip,iter1]"])
    compact = load_config("quickstart", ["variants.iter1={method: iter-snip, rounds: 1}", "methods=[iter-snip,iter1]"])
    for config in (dotted, compact):
        rows = suite_rows(config)
        assert rows["iter1"].method == "iter-snip" and rows["iter1"].options["rounds"] == 1
        assert rows["iter-snip"].options["rounds"] == 100


def test_the_base_section_reaches_variants_and_a_variant_s_own_options_win():
    # px.rounds sets every PX row; px-uniform.rounds (routed to variants.px-uniform) only its own.
    rows = suite_rows(load_config("quickstart", [*PX_ROWS, "px.rounds=7", "px.dtype=float32"]))
    assert {name: (row.options["rounds"], row.options["dtype"]) for name, row in rows.items()} == {
        "px": (7, "float32"),
        "px-uniform": (7, "float32"),
    }
    rows = suite_rows(load_config("quickstart", [*PX_ROWS, "px.rounds=7", "px-uniform.rounds=3"]))
    assert (rows["px"].options["rounds"], rows["px-uniform"].options["rounds"]) == (7, 3)
    assert rows["px-uniform"].options["variant"] == "uniform" and rows["px"].options["variant"] == "authors"
    # The variant's own option also beats a base-section setting of the same option.
    rows = suite_rows(load_config("quickstart", [*PX_ROWS, "px.variant=authors", "variants.px-uniform.variant=uniform"]))
    assert rows["px-uniform"].options["variant"] == "uniform"


def test_a_base_override_that_makes_two_rows_alike_is_refused():
    # snip.bn_mode=train turns `snip` into what `snip-train` is: the same trials twice.
    assert_config_error(
        "quickstart",
        ["methods=[snip,snip-train]", "snip.bn_mode=train"],
        r"rows 'snip' and 'snip-train' are the same trials \(snip with bn_mode=train rounds=1\)",
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["variants.snip-eval={method: snip, bn_mode: eval}", "methods=[snip,snip-eval]"], r"rows 'snip' and 'snip-eval' are the same trials"),
        (["variants.a={method: px, variant: uniform}", "methods=[px-uniform,a]"], r"rows 'px-uniform' and 'a' are the same trials"),
        (["variants.x.method=snipp", "methods=[x]"], r"unknown base method of variant 'x' 'snipp'; valid choices: dense, .*snip"),
        (["variants.x.method=px-uniform", "methods=[x]"], r"unknown base method of variant 'x' 'px-uniform'"),
        (["variants.px-uniform.varient=uniform"], r"variant 'px-uniform': unknown option px.varient; valid options of px: rounds, variant, dtype"),
        (["variants.px-uniform.variant=sideways"], r"'sideways'"),
        (["variants.x.bn_mode=train", "methods=[x]"], r"variant 'x' names no base method: give variants.x.method=METHOD"),
        (["variants.x={method:px,variant:uniform}"], r"names no base method.*a space after each colon"),
        (["variants.snip={method: snip, bn_mode: train}"], r"variant 'snip' has the name of a registered method"),
        (["variants.x=px"], r"bad config value for variants.x: Value 'px'"),
        (["methods=[snip,px-unifrom]"], r"unknown method 'px-unifrom'; valid choices: .*px-uniform, .*snip-train"),
        (["methods=[snip,snip]"], r"methods lists 'snip' twice"),
        (["methods=[dense]", "ablations=[shuffle]"], r"applies to none of methods"),
        (["methods=[train]", "variants.train.method=snip"], r"variant 'train' has the name of a config section"),
    ],
)
def test_bad_variants_are_one_line_user_errors(overrides, message):
    assert_config_error("quickstart", overrides, message)


def test_ablations_apply_to_variant_rows_by_their_base_method():
    specs = expand_grid(load_config("quickstart", ["methods=[dense,snip-train]", "ablations=[shuffle]", "seeds=1", "sparsities=[0.9]"]))
    assert [(s.row_name, s.ablation) for s in specs] == [("dense", None), ("snip-train", None), ("snip-train", "shuffle")]
    assert specs[2].label == "snip-train (shuffle), s=0.9, seed=0"


def test_label_rows_names_each_record_by_its_key_in_the_current_grid():
    specs = expand_grid(load_config("quickstart", ["variants.pxu={method: px, variant: uniform}", "methods=[px,pxu]", "seeds=1", "sparsities=[0.9]"]))
    records = [{"key": spec.key, "method": "px", "row": "old-name"} for spec in specs] + [{"key": "elsewhere", "method": "px", "row": "kept"}]
    assert [r["row"] for r in label_rows(records, specs)] == ["px", "pxu", "kept"]
    assert records[1]["row"] == "old-name"  # the input is not modified


def test_the_api_resolves_a_variant_by_name_with_keywords_on_top():
    variants = load_config("quickstart").variants
    assert method_options("px-uniform", variants, {}) == ("px", {"variant": "uniform"})
    assert method_options("px-uniform", variants, {"rounds": 5, "variant": "authors"}) == ("px", {"variant": "authors", "rounds": 5})
    assert method_options("snip", variants, {"rounds": 2}) == ("snip", {"rounds": 2})
    assert method_options("snip", None, {}) == ("snip", {})
    with pytest.raises(UserError, match=r"unknown method 'px-unifrom'; valid choices: .*px-uniform"):
        method_options("px-unifrom", variants, {})
    with pytest.raises(UserError, match=r"variants.x must be a mapping \{method: BASE, option: value, ...\}, got 'px'"):
        method_options("x", {"x": "px"}, {})
