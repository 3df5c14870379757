"""Shared fixtures: tiny networks and random pruning batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Two convs and a classifier: small enough to reason about by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(20, 3, 8, 8, generator=generator), torch.arange(20) % 10)]


@pytest.fixture
def cifar_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(2)
    return [(torch.randn(10, 3, 32, 32, generator=generator), torch.arange(10))]


def assert_config_error(suite: str, overrides: list[str], message: str) -> None:
    """Loading `suite` with `overrides` fails with a one-line UserError matching `message`."""
    from pai_bench.config import load_config
    from pai_bench.errors import UserError

    with pytest.raises(UserError, match=message) as caught:
        load_config(suite, overrides)
    assert "\n" not in str(caught.value)
