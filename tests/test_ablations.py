"""Ablations: shuffle really permutes, reinit keeps the mask, invert keeps the lowest scores."""

from __future__ import annotations

import pytest
import torch

import pai_bench
from pai_bench.ablations import ABLATIONS, applies_to, check_ablation, reinit_seed, row_label, shuffle_masks
from pai_bench.errors import UserError
from pai_bench.masks import prunable_parameters


def test_shuffle_keeps_each_layer_count_and_moves_the_positions(tiny_net, batches):
    masks = pai_bench.prune(tiny_net, "magnitude", 0.7, batches).masks
    shuffled = shuffle_masks(masks, torch.Generator().manual_seed(0))
    for name, mask in masks.items():
        assert shuffled[name].shape == mask.shape and shuffled[name].dtype == torch.bool
        assert int(shuffled[name].sum()) == int(mask.sum()), name
    moved = sum(int((shuffled[name] != masks[name]).sum()) for name in masks)
    assert moved > 0.3 * sum(mask.numel() for mask in masks.values())
    again = shuffle_masks(masks, torch.Generator().manual_seed(0))
    assert all(torch.equal(again[name], shuffled[name]) for name in masks)


def test_invert_selects_the_complement_ranking(tiny_net, batches):
    """One-shot magnitude at 50 % of an even count: inverted keeps exactly the weights the plain
    ranking drops, and they are the smallest ones."""
    params = prunable_parameters(tiny_net)
    total = sum(p.numel() for p in params.values())
    assert total % 2 == 0
    plain = pai_bench.prune(tiny_net, "magnitude", 0.5, batches).masks
    inverted = pai_bench.prune(tiny_net, "magnitude", 0.5, batches, invert=True).masks
    for name in plain:
        assert torch.equal(inverted[name], ~plain[name]), name
    kept = torch.cat([params[n].detach().abs().flatten()[inverted[n].flatten()] for n in params])
    dropped = torch.cat([params[n].detach().abs().flatten()[~inverted[n].flatten()] for n in params])
    assert kept.max() <= dropped.min()


def test_invert_keeps_the_exact_count_with_rounds(tiny_net, batches):
    result = pai_bench.prune(tiny_net, "synflow", 0.9, batches, invert=True, rounds=5)
    assert result.kept == round(0.1 * result.total)


def test_invert_refused_for_architecture_methods(tiny_net, batches):
    with pytest.raises(UserError, match="invert does not apply to 'scratch-e'"):
        pai_bench.prune(pai_bench.build_model("quicknet", num_classes=10, seed=0), "scratch-e", 0.5, batches, invert=True)


def test_reinit_seed_is_deterministic_and_apart_from_trial_seeds():
    assert reinit_seed(3) == reinit_seed(3)
    assert len({reinit_seed(seed) for seed in range(100)} | set(range(100))) == 200


def test_names_and_applicability():
    assert ABLATIONS == ("shuffle", "reinit", "invert")
    assert row_label("snip", "shuffle") == "snip (shuffled)" and row_label("snip", None) == "snip"
    assert applies_to("snip") and applies_to("px")
    assert not applies_to("dense") and not applies_to("scratch-b")
    with pytest.raises(UserError, match="unknown ablation 'flip'; valid choices: invert, reinit, shuffle"):
        check_ablation("flip")
