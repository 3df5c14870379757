"""Checks that need the suite's models, made before any trial runs."""

from __future__ import annotations

import pytest
from quick_trials import small_specs

from pai_bench.errors import UserError
from pai_bench.runner.preflight import check_kept_counts
from pai_bench.trial import data_key

QUICKNET_WEIGHTS = 24_112  # prunable weights of quicknet with 10 classes


def test_a_sparsity_that_keeps_no_weight_is_refused_before_any_trial():
    specs = small_specs("methods=[dense,magnitude]", f"sparsities=[0.5,{1 - 0.4 / QUICKNET_WEIGHTS}]")
    classes = {data_key(spec): 10 for spec in specs}
    with pytest.raises(UserError, match=r"keeps round\(\(1 - s\) \* N\) = 0 of the N = 24,112 prunable weights of quicknet; the largest sparsity that keeps one is 0.99995852"):
        check_kept_counts(specs, classes)


def test_the_largest_sparsity_that_keeps_one_weight_passes():
    specs = small_specs("methods=[magnitude]", f"sparsities=[{1 - 1 / QUICKNET_WEIGHTS}]")
    check_kept_counts(specs, {data_key(spec): 10 for spec in specs})


def test_methods_that_build_a_small_model_are_not_masks():
    specs = small_specs("methods=[scratch-e]", f"sparsities=[{1 - 0.4 / QUICKNET_WEIGHTS}]")
    check_kept_counts(specs, {data_key(spec): 10 for spec in specs})


def test_a_trajectory_method_is_checked_too():
    specs = small_specs("methods=[imp]", f"sparsities=[0.5,{1 - 0.4 / QUICKNET_WEIGHTS}]")
    with pytest.raises(UserError, match=r"= 0 of the N = 24,112 prunable weights of quicknet"):
        check_kept_counts(specs, {data_key(spec): 10 for spec in specs})
