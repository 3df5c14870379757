"""NTK-SAP: closed forms on tiny linear networks (with and without fresh weights), BatchNorm
statistics from the Gaussian input against a hand-written forward, exact counts on ResNet-20,
the live model untouched, determinism."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import pai_bench
from pai_bench.errors import UserError
from pai_bench.masks import apply_masks, full_masks, prunable_parameters
from pai_bench.methods.ntk_sap import NtkSap, NtkSapOptions
from pai_bench.plugins import create_method

SPARSITIES = [0.9, 0.99, 0.999, 0.9999]
EPS = 0.01



def score(model, masks, batches, seed=0, **options):
    method = create_method("ntk-sap", options)
    return method.score(model, masks, batches, torch.Generator().manual_seed(seed))


def linear_batches():
    g = torch.Generator().manual_seed(9)
    return [(torch.randn(5, 4, generator=g, dtype=torch.float64), torch.zeros(5)),
            (torch.randn(3, 4, generator=g, dtype=torch.float64), torch.zeros(3))]  # fmt: skip


def partial_masks(model):
    masks = full_masks(prunable_parameters(model))
    first = next(iter(masks))
    masks[first][0, 1] = False
    masks[first][2, 3] = False
    apply_masks(model, masks)
    return masks


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("reinit", [False, True])
def test_closed_form_one_linear_layer(reinit):
    """f(x) = W x. f(x; W⊙m) − f(x; W'⊙m) = ((W − W')⊙m) x = −ε (N⊙m) x =: d(x), so

        ∂/∂m_ij Σ_x ‖d(x)‖² = Σ_x 2 d_i(x) · (−ε N_ij x_j) = −2ε N_ij (dᵀ X)_ij,

    summed over both batches before the absolute value; pruned entries score 0. The weights
    cancel: a fresh draw changes only the random stream (drawn first: W, then x, then N)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=False).double()
    masks = partial_masks(model)
    m = masks["weight"].double()
    batches = linear_batches()

    got = score(copy.deepcopy(model), masks, batches, seed=5, reinit=reinit, samples=2, rounds=1)

    g = torch.Generator().manual_seed(5)
    total = torch.zeros(3, 4, dtype=torch.float64)
    for _ in range(2):
        for inputs, _ in batches:
            if reinit:
                torch.randn(3, 4, generator=g, dtype=torch.float64)  # W, irrelevant here
            x = torch.randn(inputs.shape, generator=g, dtype=torch.float64)
            n = torch.randn(3, 4, generator=g, dtype=torch.float64)
            d = x @ (-EPS * n * m).T  # (batch, out)
            total += -2 * EPS * n * (d.T @ x)
    expected = (total * m).abs()
    torch.testing.assert_close(got["weight"], expected, rtol=1e-10, atol=1e-16)
    assert got["weight"][0, 1] == 0 and got["weight"][2, 3] == 0


class TwoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(4, 5, bias=False)
        self.layer2 = nn.Linear(5, 3, bias=False)

    def forward(self, x):
        return self.layer2(self.layer1(x))


@pytest.mark.parametrize("reinit", [False, True])
def test_closed_form_two_linear_layers_depends_on_the_weights(reinit):
    """f = W2 W1 x; A = W⊙m, B = W'⊙m, d = (A2 A1 − B2 B1) x, X = inputs (rows), D = d (rows):

        ∂R/∂m1 = 2 [W1 ⊙ (A2ᵀ Dᵀ X) − W1' ⊙ (B2ᵀ Dᵀ X)],
        ∂R/∂m2 = 2 [W2 ⊙ (Dᵀ X A1ᵀ) − W2' ⊙ (Dᵀ X B1ᵀ)].

    With `reinit` the weights are Kaiming normal draws (std √(2/fan_in)) from the generator."""
    torch.manual_seed(1)
    model = TwoLinear().double()
    masks = partial_masks(model)
    batches = linear_batches()

    got = score(copy.deepcopy(model), masks, batches, seed=7, reinit=reinit, rounds=1)

    g = torch.Generator().manual_seed(7)
    m1, m2 = masks["layer1.weight"].double(), masks["layer2.weight"].double()
    sums = [torch.zeros(5, 4, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)]
    for inputs, _ in batches:
        if reinit:
            w1 = torch.randn(5, 4, generator=g, dtype=torch.float64) * math.sqrt(2 / 4)
            w2 = torch.randn(3, 5, generator=g, dtype=torch.float64) * math.sqrt(2 / 5)
        else:
            w1, w2 = model.layer1.weight.detach(), model.layer2.weight.detach()
        x = torch.randn(inputs.shape, generator=g, dtype=torch.float64)
        v1 = w1 + EPS * torch.randn(5, 4, generator=g, dtype=torch.float64)
        v2 = w2 + EPS * torch.randn(3, 5, generator=g, dtype=torch.float64)
        a1, a2, b1, b2 = w1 * m1, w2 * m2, v1 * m1, v2 * m2
        d = x @ (a2 @ a1 - b2 @ b1).T
        sums[0] += 2 * (w1 * (a2.T @ d.T @ x) - v1 * (b2.T @ d.T @ x))
        sums[1] += 2 * (w2 * (d.T @ x @ a1.T) - v2 * (d.T @ x @ b1.T))
    torch.testing.assert_close(got["layer1.weight"], (sums[0] * m1).abs(), rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(got["layer2.weight"], (sums[1] * m2).abs(), rtol=1e-9, atol=1e-14)


def test_batchnorm_uses_the_statistics_of_the_gaussian_input_for_both_networks():
    """Linear → BN → ReLU → Linear. Reference written out: the statistics are the batch mean and
    unbiased variance of the unperturbed pre-activations (momentum 1, then eval mode), shared
    by the perturbed network, with no gradient through them; BN scale 1, shift 0 after reinit
    (the model's are changed here to show it)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        model[1].weight.fill_(3.0)
        model[1].running_mean.fill_(7.0)
        model[3].bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    masks = partial_masks(model)
    batches = [(torch.zeros(8, 4, dtype=torch.float64), torch.zeros(8))]

    got = score(copy.deepcopy(model), masks, batches, seed=3, rounds=1)

    g = torch.Generator().manual_seed(3)
    w1 = torch.randn(6, 4, generator=g, dtype=torch.float64) * math.sqrt(2 / 4)
    w2 = torch.randn(3, 6, generator=g, dtype=torch.float64) * math.sqrt(2 / 6)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    v1 = w1 + EPS * torch.randn(6, 4, generator=g, dtype=torch.float64)
    v2 = w2 + EPS * torch.randn(3, 6, generator=g, dtype=torch.float64)
    m1 = masks["0.weight"].double().requires_grad_(True)
    m2 = masks["3.weight"].double().requires_grad_(True)
    bias = model[3].bias.detach()
    h = x @ (w1 * m1).T
    mean, var = h.mean(0).detach(), h.var(0, unbiased=True).detach()

    def net(a1, a2):
        z = torch.relu((x @ a1.T - mean) / torch.sqrt(var + 1e-5))
        return z @ a2.T + bias

    r = (net(w1 * m1, w2 * m2) - net(v1 * m1, v2 * m2)).pow(2).sum()
    g1, g2 = torch.autograd.grad(r, [m1, m2])
    torch.testing.assert_close(got["0.weight"], (g1 * masks["0.weight"]).abs(), rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(got["3.weight"], (g2 * masks["3.weight"]).abs(), rtol=1e-9, atol=1e-14)


# ----------------------------------------------------------------------------- driver rules


def resnet20():
    return pai_bench.build_model("resnet20", num_classes=10, seed=0)


def small_batch():
    g = torch.Generator().manual_seed(4)
    return [(torch.randn(4, 3, 32, 32, generator=g), torch.arange(4))]


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_exact_kept_count_on_resnet20(sparsity):
    model = resnet20()
    total = sum(p.numel() for p in prunable_parameters(model).values())
    result = pai_bench.prune(model, "ntk-sap", sparsity, small_batch(), seed=0, rounds=2)
    assert result.kept == round((1 - sparsity) * total)
    assert sum(int(m.sum()) for m in result.masks.values()) == result.kept


def test_live_model_untouched_deterministic_and_options_recorded():
    model = resnet20()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    rng = torch.get_rng_state()
    first = pai_bench.prune(model, "ntk-sap", 0.99, small_batch(), seed=1, rounds=1)
    again = pai_bench.prune(model, "ntk-sap", 0.99, small_batch(), seed=1, rounds=1)
    other = pai_bench.prune(model, "ntk-sap", 0.99, small_batch(), seed=2, rounds=1)
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN buffers
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    assert model.training
    assert all(torch.equal(first.masks[n], again.masks[n]) for n in first.masks)
    assert any(not torch.equal(first.masks[n], other.masks[n]) for n in first.masks)
    assert first.options == {"rounds": 1, "epsilon": 0.01, "samples": 1, "reinit": True, "init": "kaiming_fan_in"}


def test_fresh_weights_differ_from_scoring_the_actual_init():
    model = resnet20()
    masks = full_masks(prunable_parameters(model))
    fresh = score(copy.deepcopy(model), masks, small_batch(), reinit=True)
    actual = score(copy.deepcopy(model), masks, small_batch(), reinit=False)
    assert not torch.allclose(fresh["conv.weight"], actual["conv.weight"])


def test_defaults_and_option_checks():
    assert NtkSap().rounds() == 20
    assert NtkSapOptions().epsilon == 0.01
    for bad in ({"init": "xavier"}, {"epsilon": 0.0}, {"samples": 0}):
        with pytest.raises(UserError):
            NtkSapOptions(**bad)
    with pytest.raises(UserError, match="batches"):
        NtkSap().score(resnet20(), full_masks(prunable_parameters(resnet20())), [], torch.Generator())
