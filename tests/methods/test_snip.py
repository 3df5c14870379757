"""SNIP and iterative SNIP: the score against gradients derived independently, the exact count,
the iterative schedule, and the rules every method obeys (live model untouched, determinism)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pai_bench
from pai_bench.errors import UserError
from pai_bench.masks import full_masks, prunable_parameters
from pai_bench.plugins import create_method
from pai_bench.pruning import schedule

SPARSITIES = [0.9, 0.99, 0.999, 0.9999]



# ----------------------------------------------------------------------------- helpers


def score_with(method_name: str, model: nn.Module, batches, **options) -> dict[str, torch.Tensor]:
    """The method's scores on a copy of `model` with full masks, as the driver's first round."""
    method = create_method(method_name, options)
    masks = full_masks(prunable_parameters(model))
    return method.score(copy.deepcopy(model), masks, batches, torch.Generator().manual_seed(0))


def two_layer_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()


def hand_gradients(model: nn.Sequential, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dW1, dL/dW2 of Σ_batches mean cross-entropy, derived by hand (no autograd).

    a = x W1ᵀ + b1, h = relu(a), z = h W2ᵀ + b2; for one batch of N,
    δz = (softmax(z) - onehot(y)) / N, dW2 = δzᵀ h, δa = (δz W2) ⊙ 1[a > 0], dW1 = δaᵀ x.
    """
    w1, b1 = model[0].weight.detach(), model[0].bias.detach()
    w2, b2 = model[2].weight.detach(), model[2].bias.detach()
    g1, g2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for x, y in batches:
        a = x @ w1.T + b1
        h = a.clamp(min=0)
        z = h @ w2.T + b2
        p = torch.exp(z - z.max(dim=1, keepdim=True).values)
        p = p / p.sum(dim=1, keepdim=True)
        dz = (p - F.one_hot(y, z.shape[1]).to(p.dtype)) / x.shape[0]
        g2 += dz.T @ h
        da = (dz @ w2) * (a > 0).to(a.dtype)
        g1 += da.T @ x
    return g1, g2


def mlp_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(5)
    return [
        (torch.randn(6, 5, generator=generator, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])),
        (torch.randn(4, 5, generator=generator, dtype=torch.float64), torch.tensor([2, 2, 1, 0])),
    ]


def functional_tiny_net(weights: dict[str, torch.Tensor], model: nn.Module, x: torch.Tensor, bn_train: bool):
    """conftest's TinyNet written out with torch.nn.functional, weights passed in."""
    bn = model.bn1
    out = F.conv2d(x, weights["conv1.weight"], model.conv1.bias, padding=1)
    out = F.batch_norm(
        out, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias,
        training=bn_train, eps=bn.eps,
    )
    out = F.relu(out)
    out = F.relu(F.conv2d(out, weights["conv2.weight"], model.conv2.bias, padding=1))
    return F.linear(out.mean(dim=(2, 3)), weights["fc.weight"], model.fc.bias)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}



# ----------------------------------------------------------------------------- SNIP score


def test_snip_is_abs_weight_times_hand_derived_gradient_over_two_batches():
    model = two_layer_mlp()
    batches = mlp_batches()
    g1, g2 = hand_gradients(model, batches)
    # the accumulation is a sum over the batches, not only the last batch and not a mean
    assert not torch.allclose(g1, hand_gradients(model, batches[1:])[0])
    scores = score_with("snip", model, batches)
    assert set(scores) == {"0.weight", "2.weight"}
    torch.testing.assert_close(scores["0.weight"], (model[0].weight.detach() * g1).abs(), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(scores["2.weight"], (model[2].weight.detach() * g2).abs(), rtol=1e-12, atol=1e-15)


def test_snip_prune_keeps_the_highest_hand_computed_scores():
    model = two_layer_mlp()
    batches = mlp_batches()
    g1, g2 = hand_gradients(model, batches)
    expected = {"0.weight": (model[0].weight.detach() * g1).abs(), "2.weight": (model[2].weight.detach() * g2).abs()}
    result = pai_bench.prune(model, "snip", 0.6, batches)
    assert result.kept == round(0.4 * 56)
    kept = torch.cat([expected[name][mask] for name, mask in result.masks.items()])
    pruned = torch.cat([expected[name][~mask] for name, mask in result.masks.items()])
    assert kept.min() >= pruned.max()


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_snip_matches_autograd_on_a_functional_form(tiny_net, bn_mode):
    torch.manual_seed(3)
    tiny_net = tiny_net.double()
    with torch.no_grad():  # running statistics far from (0, 1), so eval and train differ
        tiny_net.bn1.running_mean.copy_(torch.randn(4))
        tiny_net.bn1.running_var.copy_(torch.rand(4) + 0.5)
    generator = torch.Generator().manual_seed(4)
    batches = [
        (torch.randn(12, 3, 8, 8, generator=generator, dtype=torch.float64), torch.arange(12) % 10),
        (torch.randn(8, 3, 8, 8, generator=generator, dtype=torch.float64), torch.arange(8) % 10),
    ]
    weights = {name: p.detach().clone().requires_grad_(True) for name, p in prunable_parameters(tiny_net).items()}
    loss = sum(
        F.cross_entropy(functional_tiny_net(weights, tiny_net, x, bn_mode == "train"), y) for x, y in batches
    )
    grads = dict(zip(weights, torch.autograd.grad(loss, list(weights.values()))))
    scores = score_with("snip", tiny_net, batches, bn_mode=bn_mode)
    for name, weight in weights.items():
        torch.testing.assert_close(scores[name], (weight.detach() * grads[name]).abs(), rtol=1e-10, atol=1e-14)
    other = score_with("snip", tiny_net, batches, bn_mode="train" if bn_mode == "eval" else "eval")
    assert not torch.allclose(scores["conv1.weight"], other["conv1.weight"])


def test_options_defaults_and_validation():
    assert create_method("snip").option_values() == {"bn_mode": "eval", "rounds": 1}
    assert create_method("iter-snip").option_values() == {"rounds": 100, "bn_mode": "train"}
    with pytest.raises(UserError, match="bn_mode"):
        create_method("snip", {"bn_mode": "frozen"})
    with pytest.raises(UserError, match="bn_mode"):
        create_method("iter-snip", {"bn_mode": "frozen"})


# ----------------------------------------------------------------------------- exact count


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("method, options", [("snip", {}), ("iter-snip", {"rounds": 3})])
def test_exact_kept_count_on_resnet20(resnet20_and_batch, method, options, sparsity):
    model, batch = resnet20_and_batch
    total = sum(p.numel() for p in prunable_parameters(model).values())
    result = pai_bench.prune(model, method, sparsity, batch, seed=0, **options)
    assert result.kept == round((1 - sparsity) * total)
    assert sum(int(mask.sum()) for mask in result.masks.values()) == result.kept
    assert result.total == total


# ----------------------------------------------------------------------------- iterative SNIP


def test_iter_snip_rescores_the_masked_net_and_pruned_weights_stay_pruned(tiny_net, batches):
    from pai_bench.methods.iter_snip import IterSnip, IterSnipOptions

    seen = []

    class Recording(IterSnip):
        def score(self, model, masks, batches, generator):
            params = dict(model.named_parameters())
            for name, mask in masks.items():  # the copy it scores has the current masks applied
                assert torch.all(params[name].detach()[~mask] == 0)
            scores = super().score(model, masks, batches, generator)
            for name, mask in masks.items():  # a pruned weight scores 0: SNIP on the masked net
                assert torch.all(scores[name][~mask] == 0)
            seen.append({name: mask.clone() for name, mask in masks.items()})
            return scores

    rounds = 6
    result = pai_bench.prune(tiny_net, Recording(IterSnipOptions(rounds=rounds)), 0.95, batches)
    total = sum(p.numel() for p in prunable_parameters(tiny_net).values())
    assert len(seen) == rounds
    history = seen + [result.masks]
    counts = [sum(int(m.sum()) for m in masks.values()) for masks in history]
    assert counts == [total] + schedule(total, 0.95, rounds)
    for earlier, later in zip(history, history[1:]):
        for name in earlier:
            assert not torch.any(later[name] & ~earlier[name]), f"a pruned weight of {name} came back"
    assert result.kept == round(0.05 * total)
    assert result.rounds == rounds


def test_iter_snip_differs_from_one_shot_snip_at_high_sparsity(tiny_net, batches):
    one_shot = pai_bench.prune(tiny_net, "snip", 0.95, batches).masks
    iterative = pai_bench.prune(tiny_net, "iter-snip", 0.95, batches, rounds=20, bn_mode="eval").masks
    assert any(not torch.equal(one_shot[name], iterative[name]) for name in one_shot)
    # with one round and the same BN mode it is SNIP: the score function is shared
    single = pai_bench.prune(tiny_net, "iter-snip", 0.95, batches, rounds=1, bn_mode="eval").masks
    assert all(torch.equal(one_shot[name], single[name]) for name in one_shot)


# ----------------------------------------------------------------------------- the common rules


@pytest.mark.parametrize("method, options", [("snip", {}), ("iter-snip", {"rounds": 4})])
@pytest.mark.parametrize("live_mode", ["train", "eval"])
def test_live_model_untouched_deterministic_and_options_recorded(tiny_net, batches, method, options, live_mode):
    tiny_net.train(live_mode == "train")
    before = state_copy(tiny_net)
    first = pai_bench.prune(tiny_net, method, 0.9, batches, seed=1, **options)
    again = pai_bench.prune(tiny_net, method, 0.9, batches, seed=1, **options)
    after = tiny_net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)  # BN buffers too
    assert tiny_net.training == (live_mode == "train")
    assert all(module.training == (live_mode == "train") for module in tiny_net.modules())
    assert all(torch.equal(first.masks[name], again.masks[name]) for name in first.masks)
    expected = create_method(method, options).option_values()
    assert first.options == expected
    assert first.method == method
