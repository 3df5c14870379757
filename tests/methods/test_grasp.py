"""GraSP: Hg against a finite difference of g, the sign against the measured change of ‖g‖²
when each weight is actually zeroed, the exact count, and the common rules."""

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

SPARSITIES = [0.9, 0.99, 0.999, 0.9999]
T = 200.0



# ----------------------------------------------------------------------------- helpers


def gradient(model: nn.Module, names, batches, temperature: float = T) -> list[torch.Tensor]:
    """g = Σ_batches ∇ cross_entropy(model(x) / T, y) over the named weights, train mode."""
    model.train()
    params = [dict(model.named_parameters())[name] for name in names]
    total = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        for acc, grad in zip(total, torch.autograd.grad(F.cross_entropy(model(x) / temperature, y), params)):
            acc += grad
    return total


def squared_norm(tensors) -> float:
    return float(sum((t**2).sum() for t in tensors))


def grasp_scores(model: nn.Module, batches, **options) -> dict[str, torch.Tensor]:
    method = create_method("grasp", options)
    masks = full_masks(prunable_parameters(model))
    return method.score(copy.deepcopy(model), masks, batches, torch.Generator().manual_seed(0))


def double_batches(shape, sizes, classes, seed) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, *shape, generator=generator, dtype=torch.float64), torch.arange(size) % classes)
        for size in sizes
    ]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = torch.stack([a.argsort().argsort(), b.argsort().argsort()]).to(torch.float64)
    return float(torch.corrcoef(ranks)[0, 1])


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


# ----------------------------------------------------------------------------- Hg


class SmoothConvNet(nn.Module):
    """Conv, train-mode BatchNorm, conv, linear, with tanh: smooth, so a finite difference of g
    has no ReLU kink to cross (a kink within the step makes g jump, not the method wrong)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.bn1(self.conv1(x)))
        x = torch.tanh(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_hessian_gradient_matches_a_finite_difference_of_g():
    """Hg ≈ (g(θ + εg) − g(θ − εg)) / 2ε, in float64, through conv, train-mode BN and tanh."""
    from pai_bench.methods.grasp import gradient_and_hessian_gradient

    torch.manual_seed(0)
    model = SmoothConvNet().double()
    batches = double_batches((3, 8, 8), (12, 8), 10, seed=7)
    names = list(prunable_parameters(model))
    g = gradient(model, names, batches)
    theta = [dict(model.named_parameters())[name].detach().clone() for name in names]
    eps = 1e-5 * (squared_norm(theta) / squared_norm(g)) ** 0.5  # a step of 1e-5 ‖θ‖

    def g_at(sign: float) -> list[torch.Tensor]:
        moved = copy.deepcopy(model)
        params = dict(moved.named_parameters())
        with torch.no_grad():
            for name, t, d in zip(names, theta, g):
                params[name].copy_(t + sign * eps * d)
        return gradient(moved, names, batches)

    plus, minus = g_at(1.0), g_at(-1.0)
    hg_fd = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
    scale = squared_norm(hg_fd) ** 0.5
    assert scale > 0

    scored = copy.deepcopy(model).train()
    params = [dict(scored.named_parameters())[name] for name in names]
    _, hg = gradient_and_hessian_gradient(scored, params, batches, T)
    assert squared_norm([a - b for a, b in zip(hg, hg_fd)]) ** 0.5 < 1e-6 * scale

    # the score the method returns is θ ⊙ Hg (= −S) for every weight
    scores = grasp_scores(model, batches)
    expected = torch.cat([(t * h).flatten() for t, h in zip(theta, hg_fd)])
    got = torch.cat([scores[name].flatten() for name in names])
    assert (got - expected).norm() < 1e-6 * expected.norm()


def test_hg_is_accumulated_over_all_batches(tiny_net):
    model = tiny_net.double()
    batches = double_batches((3, 8, 8), (10, 10), 10, seed=8)
    both = grasp_scores(model, batches)
    first = grasp_scores(model, batches[:1])
    assert not torch.allclose(both["conv2.weight"], first["conv2.weight"], rtol=1e-3, atol=0)


# ----------------------------------------------------------------------------- the sign


def tanh_mlp() -> nn.Module:
    """Smooth and small, so that zeroing one weight is close to its first-order prediction."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4)
    ).double()


def measured_change_when_zeroed(model: nn.Module, batches) -> dict[str, torch.Tensor]:
    """‖g(θ with θ_q = 0)‖² − ‖g(θ)‖² for every prunable weight q, by zeroing it."""
    names = list(prunable_parameters(model))
    base = squared_norm(gradient(model, names, batches))
    work = copy.deepcopy(model)
    params = dict(work.named_parameters())
    changes = {}
    for name in names:
        flat = params[name].data.view(-1)
        change = torch.zeros(flat.numel(), dtype=torch.float64)
        for index in range(flat.numel()):
            kept = flat[index].item()
            flat[index] = 0.0
            change[index] = squared_norm(gradient(work, names, batches)) - base
            flat[index] = kept
        changes[name] = change.view_as(params[name])
    return changes


def test_grasp_keeps_the_weights_whose_removal_most_reduces_the_gradient_norm():
    model = tanh_mlp()
    batches = double_batches((6,), (20, 20), 4, seed=9)
    change = measured_change_when_zeroed(model, batches)
    names = list(change)
    delta = torch.cat([change[name].flatten() for name in names])
    scores = grasp_scores(model, batches)
    score = torch.cat([scores[name].flatten() for name in names])

    # first order: removing θ_q changes ‖g‖² by −2 θ_q (Hg)_q = −2 × (the returned score)
    assert rank_correlation(score, -delta) > 0.9  # an inverted sign gives about −0.95
    assert float(torch.corrcoef(torch.stack([-2 * score, delta]))[0, 1]) > 0.9

    total = delta.numel()
    # what GraSP removes first (the 20 % with the largest S = −θ Hg) raises ‖g‖² when removed,
    removed_first = ~torch.cat([m.flatten() for m in pai_bench.prune(model, "grasp", 0.2, batches).masks.values()])
    assert int(removed_first.sum()) == round(0.2 * total)
    assert (delta[removed_first] > 0).float().mean() >= 0.9
    # what it keeps to the last (the 20 % with the smallest S) lowers ‖g‖² when removed,
    kept_last = torch.cat([m.flatten() for m in pai_bench.prune(model, "grasp", 0.8, batches).masks.values()])
    assert (delta[kept_last] < 0).float().mean() >= 0.9
    # and at half sparsity it keeps mostly the half whose removal lowers ‖g‖² the most.
    kept_half = torch.cat([m.flatten() for m in pai_bench.prune(model, "grasp", 0.5, batches).masks.values()])
    lowest_half = torch.zeros(total, dtype=torch.bool)
    lowest_half[delta.argsort()[: int(kept_half.sum())]] = True
    assert (kept_half & lowest_half).sum() >= 0.85 * kept_half.sum()
    assert delta[kept_half].mean() < 0 < delta[~kept_half].mean()


# ----------------------------------------------------------------------------- count and rules



@pytest.fixture(scope="module")
def scored_once_grasp():
    """GraSP whose one-shot scores are computed on the first call and replayed after: the
    scores do not depend on the sparsity, and the double backward is the slow part."""
    from pai_bench.methods.grasp import Grasp

    class ScoredOnce(Grasp):
        cached: dict[str, torch.Tensor] | None = None

        def score(self, model, masks, batches, generator):
            if self.cached is None:
                self.cached = super().score(model, masks, batches, generator)
            return {name: score.clone() for name, score in self.cached.items()}

    return ScoredOnce()


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_exact_kept_count_on_resnet20(resnet20_and_batch, scored_once_grasp, sparsity):
    model, batch = resnet20_and_batch
    total = sum(p.numel() for p in prunable_parameters(model).values())
    result = pai_bench.prune(model, scored_once_grasp, sparsity, batch, seed=0)
    assert result.kept == round((1 - sparsity) * total)
    assert sum(int(mask.sum()) for mask in result.masks.values()) == result.kept
    assert result.total == total


def test_options_defaults():
    assert create_method("grasp").option_values() == {"temperature": 200.0, "reinit_linear": False}
    assert create_method("grasp").rounds() == 1
    with pytest.raises(UserError, match="temperature"):
        create_method("grasp", {"temperature": 0.0})


@pytest.mark.parametrize("options", [{}, {"reinit_linear": True}])
@pytest.mark.parametrize("live_mode", ["train", "eval"])
def test_live_model_untouched_deterministic_and_options_recorded(tiny_net, batches, options, live_mode):
    tiny_net.train(live_mode == "train")
    before = state_copy(tiny_net)
    first = pai_bench.prune(tiny_net, "grasp", 0.8, batches, seed=1, **options)
    again = pai_bench.prune(tiny_net, "grasp", 0.8, batches, seed=1, **options)
    after = tiny_net.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # fc and BN buffers too
    assert all(module.training == (live_mode == "train") for module in tiny_net.modules())
    assert all(torch.equal(first.masks[name], again.masks[name]) for name in first.masks)
    assert first.options == {"temperature": 200.0, "reinit_linear": False, **options}
    kept = dict(first.model.named_parameters())
    for name, mask in first.masks.items():  # the result holds the live weights, not re-drawn ones
        assert torch.equal(kept[name][mask], dict(tiny_net.named_parameters())[name][mask])


def test_reinit_linear_draws_from_the_method_generator(tiny_net, batches):
    seed1 = pai_bench.prune(tiny_net, "grasp", 0.8, batches, seed=1, reinit_linear=True).masks
    seed2 = pai_bench.prune(tiny_net, "grasp", 0.8, batches, seed=2, reinit_linear=True).masks
    plain1 = pai_bench.prune(tiny_net, "grasp", 0.8, batches, seed=1).masks
    plain2 = pai_bench.prune(tiny_net, "grasp", 0.8, batches, seed=2).masks
    assert not torch.equal(seed1["fc.weight"], seed2["fc.weight"])
    assert all(torch.equal(plain1[name], plain2[name]) for name in plain1)  # no randomness without it
    assert not torch.equal(seed1["fc.weight"], plain1["fc.weight"])
