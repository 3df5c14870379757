from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pai_bench
from pai_bench.effective import effective_masks
from pai_bench.masks import full_masks, prunable_parameters
from pai_bench.models import build_model


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_a_unit_with_no_kept_input_or_output_makes_its_other_weights_ineffective():
    model = _mlp()
    first = torch.ones(3, 4, dtype=torch.bool)
    second = torch.ones(2, 3, dtype=torch.bool)
    first[0] = False  # hidden unit 0 has no kept input: its outgoing weights lead nowhere
    second[:, 1] = False  # hidden unit 1 has no kept output: its incoming weights lead nowhere
    effective = pai_bench.effective_masks(model, {"0.weight": first, "2.weight": second}, (4,))
    expected_first = torch.zeros(3, 4, dtype=torch.bool)
    expected_first[2] = True
    expected_second = torch.zeros(2, 3, dtype=torch.bool)
    expected_second[:, 2] = True
    assert torch.equal(effective["0.weight"], expected_first)
    assert torch.equal(effective["2.weight"], expected_second)


def test_pruned_weights_are_never_effective_and_a_full_mask_is_all_effective():
    model = _mlp()
    masks = full_masks(prunable_parameters(model))
    assert all(mask.all() for mask in effective_masks(model, masks, (4,)).values())
    masks["0.weight"][1, 2] = False
    assert not effective_masks(model, masks, (4,))["0.weight"][1, 2]


class _Block(nn.Module):
    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_b(F.relu(self.bn(self.conv_a(x))))
        return F.relu(out + x) if self.residual else F.relu(out)


class _Net(nn.Module):
    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = _Block(residual)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        return self.fc(F.adaptive_avg_pool2d(self.block(x), 1).flatten(1))


@pytest.mark.parametrize("residual", [True, False])
def test_an_identity_shortcut_keeps_a_cut_blocks_output_alive(residual):
    torch.manual_seed(0)
    model = _Net(residual)
    masks = full_masks(prunable_parameters(model))
    masks["block.conv_a.weight"][:] = False  # the block's own path is cut
    effective = effective_masks(model, masks, (3, 8, 8))
    # conv_b's input is dead either way; the shortcut alone keeps the stem and the head alive
    assert not effective["block.conv_b.weight"].any()
    assert effective["stem.weight"].all() == residual
    assert effective["fc.weight"].all() == residual
    assert effective["stem.weight"].any() == residual


def test_the_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = _Net(True)
    before = copy.deepcopy(model.state_dict())
    masks = {name: torch.rand(p.shape) < 0.3 for name, p in prunable_parameters(model).items()}
    effective_masks(model, masks, (3, 8, 8))
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def _synflow_scores(model: nn.Module, masks: dict, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """SynFlow's score |θ| ⊙ ∂R/∂|θ| on the masked network in float64, computed the plain way:
    |weights| times masks, biases zero, BatchNorm at identity statistics, an all-ones input."""
    net = copy.deepcopy(model).double().eval()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.eps = 0.0
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name in masks:
                param.copy_(param.abs() * masks[name])
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(param.abs())
    net.zero_grad()
    net(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    params = dict(net.named_parameters())
    return {name: (params[name].grad * params[name]).detach() for name in masks}


@pytest.mark.parametrize("density", [0.3, 0.03, 0.004])
def test_synflow_in_float64_is_nonzero_exactly_on_the_effective_weights(density):
    model = build_model("resnet20", num_classes=10, seed=0)
    generator = torch.Generator().manual_seed(1)
    masks = {name: torch.rand(p.shape, generator=generator) < density for name, p in prunable_parameters(model).items()}
    effective = effective_masks(model, masks, (3, 32, 32))
    scores = _synflow_scores(model, masks, (3, 32, 32))
    for name in masks:
        assert torch.equal(effective[name], scores[name] != 0), name
    kept = sum(int(m.sum()) for m in masks.values())
    alive = sum(int(m.sum()) for m in effective.values())
    if density < 0.01:  # random pruning this sparse leaves dead weights: the test has something to find
        assert alive < kept


def test_max_pooling_passes_every_unit_of_its_window_not_only_the_one_a_tie_picks():
    # On a 2x2 map, the 3x3 kernel's corner (0, 0) reaches only output (1, 1); a max-pool whose
    # gradient went to the first of four tied maxima, (0, 0), would call that weight dead.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 1))
    effective = effective_masks(model, full_masks(prunable_parameters(model)), (1, 2, 2))
    assert effective["0.weight"].all() and effective["3.weight"].all()
