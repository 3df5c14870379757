"""Fixtures shared by the method tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread for these small graphs: on a busy 2-core machine two threads spin
    against other processes and run several times slower; alone, one is nearly as fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
