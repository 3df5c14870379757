"""PHEW: exact counts, every kept weight on an input-to-output path (checked independently of
the plugin's graph), walks ∝ |W|, shortcuts at 1/2, determinism, the live model untouched."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

import pai_bench
from pai_bench.errors import UserError
from pai_bench.masks import full_masks, prunable_parameters
from pai_bench.methods.phew import Phew, PhewOptions, build_graph, sample_walks
from pai_bench.plugins import create_method

SPARSITIES = [0.9, 0.99, 0.999, 0.9999]



# ----------------------------------------------------------------------------- helpers


def resnet20() -> nn.Module:
    return pai_bench.build_model("resnet20", num_classes=10, seed=0)


def no_batches():
    return [(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))]


def phew_masks(model: nn.Module, keep: int, seed: int = 0, **options) -> dict[str, torch.Tensor]:
    """Call `score` as the driver does (target_kept set) and keep the K finite scores."""
    method = create_method("phew", options)
    method.target_kept = keep
    masks = full_masks(prunable_parameters(model))
    scores = method.score(copy.deepcopy(model), masks, [], torch.Generator().manual_seed(seed))
    assert set(scores) == set(masks)
    kept = {name: torch.isfinite(score) for name, score in scores.items()}
    assert sum(int(k.sum()) for k in kept.values()) == keep
    return kept


def reach(mask: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Output units with a kept weight from a reachable input unit (mask: out x in x ...)."""
    return (mask.reshape(mask.shape[0], mask.shape[1], -1).any(2) & inputs[None, :]).any(1)


def coreach(mask: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Input units with a kept weight into an output unit that reaches the network output."""
    return (mask.reshape(mask.shape[0], mask.shape[1], -1).any(2) & outputs[:, None]).any(0)


def assert_on_paths(masks: dict[str, torch.Tensor], ends: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Every kept W[i, j] has input unit j reachable from the input and output unit i that
    reaches the output; `ends[name]` = (reachable inputs, co-reachable outputs) of the layer."""
    for name, mask in masks.items():
        inputs, outputs = ends[name]
        units = mask.reshape(mask.shape[0], mask.shape[1], -1).any(2)
        dangling = units & ~(outputs[:, None] & inputs[None, :])
        assert not dangling.any(), f"{name}: {int(dangling.sum())} kept weights off every path"


def chain_ends(masks: dict[str, torch.Tensor], slots: dict[str, int]) -> dict:
    """Reachability along a plain chain; `slots[name]` = inputs per unit of the layer before
    (a linear layer after flattening C x H x W has H*W inputs per channel)."""
    names = list(masks)

    def unit_mask(name):  # (out, in units): inputs of one channel merged
        m = masks[name].reshape(masks[name].shape[0], masks[name].shape[1], -1).any(2)
        s = slots.get(name, 1)
        return m.reshape(m.shape[0], -1, s).any(2)[..., None]

    fwd = [torch.ones(masks[names[0]].shape[1], dtype=torch.bool)]
    for name in names:
        fwd.append(reach(unit_mask(name), fwd[-1]))
    bwd = [torch.ones(masks[names[-1]].shape[0], dtype=torch.bool)]
    for name in reversed(names):
        bwd.insert(0, coreach(unit_mask(name), bwd[0]))
    ends = {}
    for index, name in enumerate(names):
        ends[name] = (fwd[index].repeat_interleave(slots.get(name, 1)), bwd[index + 1])
    return ends


def resnet_ends(model, masks) -> dict:
    """Reachability in a CifarResNet, written from its structure: identity shortcuts connect."""
    ends = {}
    r = torch.ones(3, dtype=torch.bool)
    forward_in = {}
    forward_in["conv.weight"] = r
    r = reach(masks["conv.weight"], r)
    for b, block in enumerate(model.blocks):
        p = f"blocks.{b}."
        forward_in[p + "conv1.weight"] = r
        mid = reach(masks[p + "conv1.weight"], r)
        forward_in[p + "conv2.weight"] = mid
        out = reach(masks[p + "conv2.weight"], mid)
        if isinstance(block.shortcut, nn.Sequential):
            forward_in[p + "shortcut.0.weight"] = r
            out = out | reach(masks[p + "shortcut.0.weight"], r)
        else:
            out = out | r
        r = out
    forward_in["fc.weight"] = r
    c = torch.ones(masks["fc.weight"].shape[0], dtype=torch.bool)
    backward_out = {"fc.weight": c}
    c = coreach(masks["fc.weight"], c)
    for b in reversed(range(len(model.blocks))):
        p = f"blocks.{b}."
        backward_out[p + "conv2.weight"] = c
        mid = coreach(masks[p + "conv2.weight"], c)
        backward_out[p + "conv1.weight"] = mid
        into = coreach(masks[p + "conv1.weight"], mid)
        if isinstance(model.blocks[b].shortcut, nn.Sequential):
            backward_out[p + "shortcut.0.weight"] = c
            into = into | coreach(masks[p + "shortcut.0.weight"], c)
        else:
            into = into | c
        c = into
    backward_out["conv.weight"] = c
    for name in masks:
        ends[name] = (forward_in[name], backward_out[name])
    return ends


class Chain(nn.Module):
    """conv -> conv -> flatten (2 channels x 2 x 2 = 8 features) -> linear -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1, bias=False)
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)  # 4x4 -> 2x2
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


# ----------------------------------------------------------------------------- exact count


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_exact_kept_count_on_resnet20_through_the_driver(sparsity):
    model = resnet20()
    total = sum(p.numel() for p in prunable_parameters(model).values())
    result = pai_bench.prune(model, "phew", sparsity, no_batches(), seed=0)
    assert result.kept == round((1 - sparsity) * total)
    assert sum(int(m.sum()) for m in result.masks.values()) == result.kept
    assert_on_paths(result.masks, resnet_ends(model, result.masks))


def test_resnet20_at_98_percent_is_fast():
    model = resnet20()
    started = time.perf_counter()
    result = pai_bench.prune(model, "phew", 0.98, no_batches(), seed=0)
    assert time.perf_counter() - started < 30
    assert all(stat.kept > 0 for stat in result.layer_stats)


def test_score_without_target_is_a_clear_error():
    model = resnet20()
    masks = full_masks(prunable_parameters(model))
    with pytest.raises(UserError, match="target_kept"):
        Phew().score(model, masks, [], torch.Generator())


# ----------------------------------------------------------------------------- paths


@pytest.mark.parametrize("keep", [4, 5, 7, 11, 30, 100, 200])
def test_every_kept_weight_lies_on_an_input_output_path_in_a_chain(keep):
    torch.manual_seed(0)
    model = Chain()
    masks = phew_masks(model, keep, seed=keep)
    assert_on_paths(masks, chain_ends(masks, {"fc1.weight": 4}))


def test_the_last_walk_is_closed_not_truncated_on_resnet20():
    """27 weights: one whole walk (at most 20 weights), the rest closes onto it."""
    model = resnet20()
    for seed in range(2):
        masks = phew_masks(model, 27, seed=seed)
        assert_on_paths(masks, resnet_ends(model, masks))


def test_linear_after_flatten_takes_the_channels_slots():
    """fc1 sees 2 channels x 4 positions: a walk from channel c enters fc1 at c*4 .. c*4+3."""
    torch.manual_seed(0)
    model = Chain()
    graph = build_graph(model, full_masks(prunable_parameters(model)))
    fc1 = next(e for e in graph.layers if e.name == "fc1.weight")
    assert fc1.slots == 4
    conv2 = next(e for e in graph.layers if e.name == "conv2.weight")
    walk, step, flat = sample_walks(graph, torch.zeros(400, dtype=torch.long), True, torch.Generator().manual_seed(1), False)
    order = torch.argsort(walk * 10 + step)
    walk, flat = walk[order].view(400, 4), flat[order].view(400, 4)
    channel = (flat[:, 1] - conv2.offset) // (4 * 9)  # conv2's output unit
    fc1_input = (flat[:, 2] - fc1.offset) % 8
    assert torch.equal(fc1_input // 4, channel)
    assert len(set((fc1_input % 4).tolist())) == 4  # every slot is used


# ----------------------------------------------------------------------------- sampling


def test_walks_follow_weight_magnitudes():
    """Forward from input 0: hidden i ∝ |W1[i, 0]|; then output k ∝ |W2[k, i]|. Backward from
    class 0: hidden j ∝ |W2[0, j]|. Kernel positions ∝ |W| inside the chosen channel pair."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[:, 0, 1, 1] = torch.tensor([8.0, 1.0, 1.0])  # hidden 0 is heavy
        model[0].weight[0, 0, 0, 0] = 8.0  # and within it two kernel positions, 8 and 8
        model[3].weight.copy_(torch.tensor([[0.5, 9.0, 0.5], [1.0, 1.0, -2.0]]))
    graph = build_graph(model, full_masks(prunable_parameters(model)))
    n = 20000
    gen = torch.Generator().manual_seed(0)
    walk, step, flat = sample_walks(graph, torch.zeros(n, dtype=torch.long), True, gen, False)
    first = flat[step == 0]
    hidden = first // 9
    p_hidden = torch.tensor([16.0, 1.0, 1.0]) / 18
    assert torch.allclose(torch.bincount(hidden, minlength=3) / n, p_hidden, atol=0.015)
    kernel = first[hidden == 0] % 9
    assert set(kernel.tolist()) == {0, 4}
    assert abs((kernel == 0).float().mean().item() - 0.5) < 0.02
    second = flat[step == 1] - 27  # linear weight (k, i) -> k * 3 + i
    from_heavy = second[second % 3 == 0] // 3
    assert abs((from_heavy == 1).float().mean().item() - 1.0 / 1.5) < 0.02  # |W2[1,0]| / Σ_k |W2[k,0]|
    walk, step, flat = sample_walks(graph, torch.zeros(n, dtype=torch.long), False, gen, False)
    hidden = (flat[step == 0] - 27) % 3
    assert torch.allclose(torch.bincount(hidden, minlength=3) / n, torch.tensor([0.5, 9.0, 0.5]) / 10, atol=0.015)


def test_heavy_connections_are_kept_far_more_often():
    """End to end: the heaviest weight of each layer is kept at a small budget much more
    often than a light one."""
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.fill_(0.1)
            layer.weight.fill_diagonal_(5.0)
    heavy = light = 0
    for seed in range(40):
        masks = phew_masks(model, 4, seed=seed)
        heavy += int(masks["0.weight"].diagonal().sum())
        light += int(masks["0.weight"].sum()) - int(masks["0.weight"].diagonal().sum())
    assert heavy > 5 * light


def test_resnet_walks_take_a_1x1_shortcut_half_the_time():
    model = resnet20()
    graph = build_graph(model, full_masks(prunable_parameters(model)))
    offsets = {e.name: (e.offset, e.offset + e.abs_weight.numel()) for e in graph.layers}

    def crossing(flat, name):
        lo, hi = offsets[name]
        return int(((flat >= lo) & (flat < hi)).sum())

    n = 2000
    for forward in (True, False):
        for identity in (False, True):
            starts = torch.arange(n) % (3 if forward else 10)
            _, _, flat = sample_walks(graph, starts, forward, torch.Generator().manual_seed(2), identity)
            assert abs(crossing(flat, "blocks.3.shortcut.0.weight") / n - 0.5) < 0.05
            identity_block = crossing(flat, "blocks.1.conv1.weight") / n
            assert identity_block == pytest.approx(0.5, abs=0.05) if identity else identity_block == 1.0


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "name, layers, identities",
    [("resnet20", 22, 7), ("resnet32", 34, 13), ("resnet56", 58, 25), ("vgg16-bn", 14, 0), ("quicknet", 4, 0)],
)
def test_graph_follows_the_models_connectivity(name, layers, identities):
    model = pai_bench.build_model(name, num_classes=10, seed=0)
    graph = build_graph(model, full_masks(prunable_parameters(model)))
    assert sorted(e.name for e in graph.layers) == sorted(prunable_parameters(model))
    assert len(graph.layers) == layers
    assert sum(e.identity for e in graph.edges) == identities
    assert graph.channels[graph.source] == 3 and graph.channels[graph.sink] == 10
    assert all(edge.slots == 1 for edge in graph.layers)  # global pooling: fc input c = channel c


def test_quicknet_prunes_on_paths():
    model = pai_bench.build_model("quicknet", num_classes=10, seed=0)
    result = pai_bench.prune(model, "phew", 0.95, no_batches(), seed=0)
    assert result.kept == round(0.05 * result.total)
    assert_on_paths(result.masks, chain_ends(result.masks, {}))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).mean(dim=(2, 3)))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, groups=2)

    def forward(self, x):
        return self.conv(x).sum()


@pytest.mark.parametrize("model, message", [(Concat(), "cat"), (Grouped(), "grouped")])
def test_unsupported_models_raise_a_clear_error(model, message):
    with pytest.raises(UserError, match=message):
        build_graph(model, full_masks(prunable_parameters(model)))


# ----------------------------------------------------------------------------- driver rules


def test_live_model_untouched_and_deterministic():
    model = resnet20()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first = pai_bench.prune(model, "phew", 0.999, no_batches(), seed=1).masks
    again = pai_bench.prune(model, "phew", 0.999, no_batches(), seed=1).masks
    other = pai_bench.prune(model, "phew", 0.999, no_batches(), seed=2).masks
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)


def test_options_recorded_and_checked():
    model = resnet20()
    result = pai_bench.prune(model, "phew", 0.99, no_batches(), identity_shortcuts=True)
    assert result.options == {"identity_shortcuts": True, "last_walk": "close"}
    assert result.kept == round(0.01 * result.total)
    with pytest.raises(UserError):
        PhewOptions(last_walk="sometimes")


def test_truncate_keeps_the_first_k_visited():
    """`last_walk=truncate`: the kept set is a prefix of one walk sequence, so a larger K keeps
    a superset (the default closes the last walk, which can differ)."""
    model = resnet20()
    small = phew_masks(model, 100, seed=4, last_walk="truncate")
    large = phew_masks(model, 1000, seed=4, last_walk="truncate")
    assert all(not (small[n] & ~large[n]).any() for n in small)


def test_excluded_layers_are_walked_but_not_counted():
    model = resnet20()
    total = sum(p.numel() for n, p in prunable_parameters(model).items() if n != "fc.weight")
    result = pai_bench.prune(model, "phew", 0.99, no_batches(), exclude=["fc.weight"])
    assert "fc.weight" not in result.masks
    assert result.kept == round(0.01 * total)
