"""Fixtures shared by the method tests."""

from __future__ import annotations

import pytest
import torch

import pai_bench


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread for these small graphs: on a busy 2-core machine two threads spin
    against other processes and run several times slower; alone, one is nearly as fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def resnet20_and_batch():
    """ResNet-20 and a Gaussian pruning batch of 10 examples per class."""
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0)
    generator = torch.Generator().manual_seed(0)
    batch = [(torch.randn(100, 3, 32, 32, generator=generator), torch.arange(100) % 10)]
    return model, batch
