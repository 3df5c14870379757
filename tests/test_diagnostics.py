"""The empirical NTK against one built from the explicit Jacobian, row by row."""

from __future__ import annotations

import torch
from torch import nn

from pai_bench.diagnostics import ntk_diagnostics, ntk_matrix, ntk_summary


def explicit_jacobian(model: nn.Module, inputs: torch.Tensor, masks=None) -> torch.Tensor:
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    outputs = model(inputs).reshape(-1)
    rows = []
    for output in outputs:
        grads = torch.autograd.grad(output, params, retain_graph=True)
        if masks is not None:
            grads = [g * masks[n] if n in masks else g for n, g in zip(names, grads)]
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    return torch.stack(rows)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_ntk_equals_the_explicit_jacobian_gram():
    model, inputs = small_net(), torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    j = explicit_jacobian(model, inputs)
    torch.testing.assert_close(ntk_matrix(model, inputs), j @ j.T, rtol=1e-6, atol=1e-8)
    summary = ntk_summary(model, inputs, top=3)
    assert abs(summary["trace"] - float((j**2).sum())) <= 1e-6 * float((j**2).sum())
    eig = torch.linalg.eigvalsh(j @ j.T).flip(0)[:3]
    torch.testing.assert_close(torch.tensor(summary["top_eigenvalues"], dtype=torch.float64), eig, rtol=1e-6, atol=1e-8)


def test_masked_weights_leave_the_kernel():
    model, inputs = small_net(), torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    mask = torch.rand(6, 4, generator=torch.Generator().manual_seed(2)) < 0.5
    masks = {"0.weight": mask}
    j = explicit_jacobian(model, inputs, {"0.weight": mask.float()})
    torch.testing.assert_close(ntk_matrix(model, inputs, masks), j @ j.T, rtol=1e-6, atol=1e-8)
    result = ntk_diagnostics(model, model, masks, inputs)
    assert 0 < result["trace_ratio"] < 1
    assert result["pruned"]["trace"] < result["dense"]["trace"]


def test_the_dense_summary_is_computed_once_per_network_and_inputs(monkeypatch):
    from pai_bench import diagnostics

    computed = []
    real = diagnostics.ntk_summary

    def counting(model, inputs, masks=None, top=5):
        computed.append(masks is None)
        return real(model, inputs, masks, top)

    monkeypatch.setattr(diagnostics, "ntk_summary", counting)
    monkeypatch.setattr(diagnostics, "_DENSE_SUMMARIES", {})
    model, inputs = small_net(), torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    masks = {"0.weight": torch.rand(6, 4, generator=torch.Generator().manual_seed(2)) < 0.5}
    first = ntk_diagnostics(model, model, masks, inputs)
    again = ntk_diagnostics(model, model, masks, inputs)
    assert computed == [False, True, False] and again["dense"] == first["dense"] and again["trace_ratio"] == first["trace_ratio"]
    other = small_net()
    with torch.no_grad():
        other[0].weight.add_(1.0)
    moved = ntk_diagnostics(other, other, masks, inputs)
    assert computed[-1] is True and moved["dense"]["trace"] != first["dense"]["trace"]
    ntk_diagnostics(model, model, masks, inputs * 2)
    assert computed[-1] is True
