"""The empirical neural tangent kernel of a masked network at initialisation.

PX claims to preserve the NTK's spectrum of the dense network; this measures it for any method:
Θ = J Jᵀ on a small batch, J the Jacobian of the logits (examples x classes rows) with respect
to the trainable parameters, masked weights excluded (they are held at zero in training, so
they are no direction of the kernel). Recorded: the trace and the top eigenvalues, for the
pruned network and its dense original.

Cost: J is built explicitly with torch.func (`jacrev` over `functional_call`), so memory is
examples x classes x parameters floats (ResNet-20, 8 examples, 10 classes: 80 x 272k x 4 B =
87 MB; VGG-16: 5 GB) and time is one vector-Jacobian product per row. Hence opt-in
(`diagnostics.ntk=true`) and a small batch.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call, jacrev


def ntk_matrix(model: nn.Module, inputs: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Θ (N·K x N·K, float64) of `model` in eval mode on `inputs`; rows ordered example-major."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    was_training = model.training
    model.eval()
    try:

        def logits(flat_params: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(model, (flat_params, buffers), (inputs,)).reshape(-1)

        jacobian = jacrev(logits)(params)
    finally:
        model.train(was_training)
    rows = []
    for name, block in jacobian.items():
        block = block.reshape(block.shape[0], -1).to(torch.float64)
        if masks is not None and name in masks:
            block = block * masks[name].reshape(1, -1).to(block.device, block.dtype)
        rows.append(block)
    j = torch.cat(rows, dim=1)
    return j @ j.T


def ntk_summary(model: nn.Module, inputs: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None, top: int = 5) -> dict:
    """Trace and the `top` largest eigenvalues of Θ, and the seconds it took."""
    started = time.perf_counter()
    kernel = ntk_matrix(model, inputs, masks)
    eigenvalues = torch.linalg.eigvalsh(kernel).flip(0)
    return {
        "trace": float(kernel.trace()),
        "top_eigenvalues": [float(v) for v in eigenvalues[:top]],
        "examples": len(inputs),
        "seconds": time.perf_counter() - started,
    }


#: Dense NTK summaries already computed in this process, by the bytes of the network and inputs:
#: every trial of a seed and cell compares against the same dense network (half of the NTK's cost).
_DENSE_SUMMARIES: dict[str, dict] = {}
_DENSE_SUMMARIES_KEPT = 8


def ntk_diagnostics(
    dense: nn.Module, pruned: nn.Module, masks: Mapping[str, torch.Tensor], inputs: torch.Tensor, top: int = 5
) -> dict:
    """The pruned network's NTK summary beside its dense original's, and their ratios. The
    dense summary is computed once per process for a network, inputs and `top`."""
    pruned_summary = ntk_summary(pruned, inputs, masks, top)
    key = _fingerprint(dense, inputs, top)
    if key not in _DENSE_SUMMARIES:
        if len(_DENSE_SUMMARIES) >= _DENSE_SUMMARIES_KEPT:
            _DENSE_SUMMARIES.pop(next(iter(_DENSE_SUMMARIES)))
        _DENSE_SUMMARIES[key] = ntk_summary(dense, inputs, None, top)
    dense_summary = copy.deepcopy(_DENSE_SUMMARIES[key])
    return {
        "pruned": pruned_summary,
        "dense": dense_summary,
        "trace_ratio": pruned_summary["trace"] / dense_summary["trace"] if dense_summary["trace"] else float("nan"),
        "top_eigenvalue_ratio": (
            pruned_summary["top_eigenvalues"][0] / dense_summary["top_eigenvalues"][0]
            if dense_summary["top_eigenvalues"][0]
            else float("nan")
        ),
    }


def _fingerprint(model: nn.Module, inputs: torch.Tensor, top: int) -> str:
    digest = hashlib.sha256(f"{type(model).__qualname__}:{top}:{model.training}".encode())
    for name, tensor in [*model.state_dict().items(), ("inputs", inputs)]:
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
