"""Fixtures of the executor tests."""

from __future__ import annotations

import pytest
from quick_trials import small_specs

from pai_bench.trial import load_trial_data


@pytest.fixture(scope="session")
def quickstart():
    """The shipped quickstart dataset, loaded once."""
    return load_trial_data(small_specs()[0])
