from __future__ import annotations

import pytest
import torch

import pai_bench
from pai_bench.masks import MaskEnforcer, architecture_stats, layer_stats, prunable_parameters


def test_prunable_parameters_are_conv_and_linear_weights(tiny_net):
    assert list(prunable_parameters(tiny_net)) == ["conv1.weight", "conv2.weight", "fc.weight"]
    assert list(prunable_parameters(tiny_net, exclude=["conv*"])) == ["fc.weight"]


@pytest.mark.parametrize("nesterov", [False, True])
def test_masked_weights_stay_exactly_zero_under_sgd(tiny_net, batches, nesterov):
    result = pai_bench.prune(tiny_net, "random", 0.8, batches)
    model, masks = result.model, result.masks
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, nesterov=nesterov, weight_decay=1e-2)
    enforcer = MaskEnforcer(model, masks)
    inputs, targets = batches[0]
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        enforcer.after_step()
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0)
        assert torch.all(optimizer.state[params[name]]["momentum_buffer"][~mask] == 0)
        assert torch.any(params[name][mask] != dict(tiny_net.named_parameters())[name][mask])


def test_layer_stats_flag_collapse_and_dead_outputs():
    masks = {"a.weight": torch.zeros(4, 2, dtype=torch.bool), "b.weight": torch.tensor([[True, False], [False, False], [True, True]])}
    stats = {stat.name: stat for stat in layer_stats(masks)}
    assert stats["a.weight"].collapsed and stats["a.weight"].alive_outputs == 0
    assert not stats["b.weight"].collapsed
    assert (stats["b.weight"].kept, stats["b.weight"].total, stats["b.weight"].alive_outputs, stats["b.weight"].outputs) == (3, 6, 2, 3)
    assert stats["b.weight"].as_dict()["density"] == 0.5


def test_export_masks_uses_torch_prune_form(tiny_net, batches):
    result = pai_bench.prune(tiny_net, "magnitude", 0.6, batches)
    inputs = batches[0][0]
    expected = result.model.eval()(inputs)
    exported = pai_bench.export_masks(result.model, result.masks)
    names = dict(exported.named_parameters())
    buffers = dict(exported.named_buffers())
    assert "conv1.weight_orig" in names and "conv1.weight" not in names
    assert torch.equal(buffers["conv1.weight_mask"].bool(), result.masks["conv1.weight"])
    assert torch.allclose(exported(inputs), expected)


def test_architecture_stats_compare_a_small_model_layer_by_layer(tiny_net):
    dense = pai_bench.build_model("quicknet")
    small = pai_bench.build_model("quicknet", widths=[4, 8, 16])
    stats = {stat.name: stat for stat in architecture_stats(dense, small)}
    assert list(stats) == ["conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"]
    conv2 = stats["conv2.weight"]
    assert (conv2.kept, conv2.total, conv2.outputs, conv2.alive_outputs) == (8 * 4 * 9, 32 * 16 * 9, 32, 8)
    assert conv2.density == 1 / 16 and not conv2.collapsed
    # Different layer names: one line for the whole model.
    [whole] = architecture_stats(dense, tiny_net)
    assert (whole.name, whole.kept, whole.total) == ("(model)", 108 + 288 + 80, 24_112)
