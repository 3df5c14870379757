"""NTK-SAP (Wang, Li & Sun, ICLR 2023): neural-tangent-kernel spectrum-aware pruning.

As the authors' `Pruners/pruners.py` (class NTKSAP) computes it, per round: for each of
`samples` weight draws (their `--ntksap_R`) and each pruning batch,
1. fresh weights θ: every conv and linear weight redrawn (the model's init, Kaiming normal with
   fan-in and gain √2 for every CIFAR model here; `init=kaiming_fan_out` for models that use
   fan-out), BatchNorm scale 1 and shift 0, biases left as they are (`reinit=false` scores the
   weights the model actually has instead);
2. an input x of standard Gaussian noise with the batch's shape (the data's values never matter);
3. BatchNorm statistics from x: running statistics reset, momentum 1, one no-grad forward in
   train mode with θ ⊙ m, then eval mode;
4. θ' = θ + ε·N(0, 1) on the masked weights, with the same masks and the same BatchNorm
   statistics; R = Σ_x ‖f(x; θ ⊙ m) − f(x; θ' ⊙ m)‖², and ∂R/∂m is accumulated.
S = |Σ ∂R/∂m| at the current mask (pruned weights 0), 20 rounds of the exponential schedule.
The authors run 20 rounds with `--ntksap_R 5` in their ResNet-20 script; their parser's
default is 1, kept here as `samples=1`.

Where the authors re-initialise the live model (their pruner redraws the weights of the model it
is handed and leaves them so), this works on the driver's deep copy only. All draws come from
the driver's generator, per batch in this order: the weights (model order), x, the noise of
each masked weight (mask order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from pai_bench.errors import UserError
from pai_bench.method import ScoreMethod, check_choice
from pai_bench.plugins import register_method

INITS = ("kaiming_fan_in", "kaiming_fan_out")


@dataclass
class NtkSapOptions:
    rounds: int = 20
    epsilon: float = 0.01  # scale of the weight perturbation
    samples: int = 1  # fresh weight draws per round, each over every pruning batch (ntksap_R)
    reinit: bool = True  # fresh weights per draw (the authors); false: the model's own weights
    init: str = "kaiming_fan_in"  # kaiming_fan_in | kaiming_fan_out: the redraw's scale

    def __post_init__(self) -> None:
        check_choice("ntk-sap.init", self.init, INITS)
        if not self.epsilon > 0:
            raise UserError(f"ntk-sap.epsilon must be positive, got {self.epsilon}")
        if self.samples < 1:
            raise UserError(f"ntk-sap.samples must be at least 1, got {self.samples}")


@register_method("ntk-sap")
class NtkSap(ScoreMethod):
    """S = |∂/∂m Σ ‖f(x; θ ⊙ m) − f(x; θ' ⊙ m)‖²| on Gaussian x, fresh θ per batch."""

    Options = NtkSapOptions

    def score(self, model, masks, batches, generator):
        if not batches:
            raise UserError("ntk-sap needs pruning batches (for the input shape)")
        options = self.options
        params = {name: p.detach() for name, p in model.named_parameters()}
        dtype = next(iter(params.values())).dtype
        device = generator.device
        layers = [
            (f"{name}.weight" if name else "weight", module)
            for name, module in model.named_modules()
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
        ]
        norms = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
        ]
        for _, norm in norms:
            norm.momentum = 1.0  # running statistics = the statistics of the last forward
        mask_values = {name: mask.to(device, dtype) for name, mask in masks.items()}
        total = {name: torch.zeros_like(value) for name, value in mask_values.items()}

        for _ in range(options.samples):
            for inputs, _targets in batches:
                weights = dict(params)
                if options.reinit:
                    for name, module in layers:
                        weights[name] = self._draw(module.weight, generator)
                    for name, norm in norms:
                        if norm.affine:
                            prefix = f"{name}." if name else ""
                            weights[prefix + "weight"] = torch.ones_like(norm.weight)
                            weights[prefix + "bias"] = torch.zeros_like(norm.bias)
                x = torch.randn(inputs.shape, generator=generator, device=device, dtype=dtype)
                perturbed = {
                    name: weights[name]
                    + options.epsilon * torch.randn(weights[name].shape, generator=generator, device=device, dtype=dtype)
                    for name in masks
                }
                for _, norm in norms:
                    norm.reset_running_stats()
                model.train()
                with torch.no_grad():
                    functional_call(model, {**weights, **{n: weights[n] * mask_values[n] for n in masks}}, (x,))
                model.eval()
                m = {name: value.clone().requires_grad_(True) for name, value in mask_values.items()}
                with torch.enable_grad():
                    out = functional_call(model, {**weights, **{n: weights[n] * m[n] for n in masks}}, (x,))
                    out_perturbed = functional_call(model, {**weights, **{n: perturbed[n] * m[n] for n in masks}}, (x,))
                    distance = (out - out_perturbed).pow(2).sum()
                    grads = torch.autograd.grad(distance, list(m.values()), allow_unused=True)
                for name, grad in zip(m, grads):
                    if grad is not None:
                        total[name] += grad
        return {name: (total[name] * mask_values[name]).abs() for name in masks}

    def _draw(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Kaiming normal, gain √2 (torch's kaiming_normal_ defaults), from `generator`."""
        receptive = math.prod(weight.shape[2:])
        fan = weight.shape[1] * receptive if self.options.init == "kaiming_fan_in" else weight.shape[0] * receptive
        std = math.sqrt(2.0 / fan)
        return std * torch.randn(weight.shape, generator=generator, device=generator.device, dtype=weight.dtype)
