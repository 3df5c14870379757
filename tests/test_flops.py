"""MACs and size figures: published counts, masked scaling, a count done by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pai_bench
from pai_bench.flops import count_macs, layer_macs, model_summary, trial_figures

CIFAR = (3, 32, 32)


@pytest.mark.parametrize(
    ("name", "published", "exact"),
    [
        ("resnet20", 40.8e6, 40_813_184),  # He et al. 2016: 41 M; ShrinkBench, Liu et al.: 40.8 M
        ("vgg16-bn", 313e6, 313_201_664),  # CIFAR VGG-16, Li et al. 2017 and Liu et al. 2019: 3.13e8
    ],
)
def test_standard_models_match_published_macs(name, published, exact):
    with torch.device("meta"):  # the count needs shapes only
        model = pai_bench.build_model(name, num_classes=10)
    macs = count_macs(model, CIFAR)
    assert macs == pytest.approx(published, rel=0.005)
    assert macs == exact


class Hand(nn.Module):
    """A net small enough to count by hand; pooling, BN and ReLU cost no MACs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)  # 8x8 out: 8*8 * 4 * 3*3*3 = 6,912
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)  # 4x4 out: 16 * 6 * 2*3*3 = 1,728
        self.fc = nn.Linear(6 * 2 * 2, 5)  # 24 * 5 = 120

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.max_pool2d(self.conv2(x), 2)
        return self.fc(x.flatten(1))


HAND_LAYERS = {"conv1": 6_912, "conv2": 1_728, "fc": 120}


def test_hand_counted_net_is_exact():
    model = Hand()
    per_layer, total = layer_macs(model, (3, 8, 8))
    assert per_layer == HAND_LAYERS
    assert total == count_macs(model, (3, 8, 8)) == 6_912 + 1_728 + 120


def test_masked_layer_counts_its_density():
    model = Hand()
    generator = torch.Generator().manual_seed(0)
    conv1 = torch.rand(model.conv1.weight.shape, generator=generator) < 0.25
    masks = {"conv1.weight": conv1, "fc.weight": torch.zeros(5, 24, dtype=torch.bool)}
    masks["fc.weight"][:, :6] = True  # density 1/4
    density = conv1.float().mean().item()
    expected = round(HAND_LAYERS["conv1"] * density) + HAND_LAYERS["conv2"] + HAND_LAYERS["fc"] // 4
    assert count_macs(model, (3, 8, 8), masks) == expected
    # Exact per kept weight: a conv weight is used once per output position (8 x 8 here).
    assert count_macs(model, (3, 8, 8), {"conv1.weight": conv1}) - count_macs(
        model, (3, 8, 8), {"conv1.weight": torch.zeros_like(conv1)}
    ) == 64 * int(conv1.sum())


def test_pruned_resnet20_counts_each_layer_at_its_density(cifar_batches):
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0)
    result = pai_bench.prune(model, "random", 0.9, cifar_batches, seed=0, scope="layer")
    per_layer, total = layer_macs(model, CIFAR)
    expected = total - sum(per_layer.values()) + sum(
        per_layer[name.rsplit(".", 1)[0]] * int(mask.sum()) / mask.numel() for name, mask in result.masks.items()
    )
    macs = count_macs(result.model, CIFAR, result.masks)
    assert macs == pytest.approx(expected, abs=len(result.masks))
    assert macs == pytest.approx(0.1 * 40_813_184, rel=0.01)  # every layer at density 0.1


def test_model_is_left_as_it_was():
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0)
    model.train()
    model.blocks[0].eval()  # a mixed-mode model keeps its modes
    before = {name: value.clone() for name, value in model.state_dict().items()}
    count_macs(model, CIFAR)
    assert model.training and not model.blocks[0].training and model.blocks[1].training
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


def test_summary_and_trial_figures_count_every_parameter():
    dense = Hand()
    params = 3 * 4 * 9 + 4 + 2 * 4 + 6 * 2 * 9 + 6 + 24 * 5 + 5  # weights, biases, BN: 401
    prunable = 3 * 4 * 9 + 6 * 2 * 9 + 24 * 5  # 336
    assert model_summary(dense, (3, 8, 8)).as_dict() == {
        "macs": 8_760,
        "params": params,
        "params_kept": params,
        "prunable": prunable,
        "prunable_kept": prunable,
    }
    masks = {"fc.weight": torch.zeros(5, 24, dtype=torch.bool)}
    masks["fc.weight"][:, :6] = True  # removes 90 weights
    figures = trial_figures(dense, dense, masks, (3, 8, 8))
    assert figures["macs_dense"] == 8_760 and figures["macs"] == 8_760 - 90
    assert figures["speedup"] == pytest.approx(8_760 / 8_670)
    assert figures["sparsity_prunable"] == pytest.approx(90 / prunable)
    assert figures["compression"] == pytest.approx(params / (params - 90))
    assert (figures["params_dense"], figures["params"], figures["prunable_dense"], figures["prunable"]) == (
        params,
        params - 90,
        prunable,
        prunable - 90,
    )
