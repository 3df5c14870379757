"""PX, Path eXclusion (Iurada, Ciccone, Tommasi, CVPR 2024): the path kernel, data-aware.

Per round, on copies of the masked network (the authors' `lib/pruners.py`, latest commit;
`variant=release-2024` computes it otherwise, see below):

1. `act`, the network as it is, in eval mode and its own dtype, runs on the batch x; every
   ReLU records its gate 1[pre-activation > 0].
2. `jvf`: prunable weights set to 1 where the mask keeps them (0 where pruned), run on x**2
   in train mode with every ReLU replaced by multiplication with its recorded gate, no
   gradient: z1 = jvf(x**2).
3. `pk`: prunable weights replaced by θ**2, ReLUs the identity: z2 = pk(ones_like(x)), with
   gradient.
4. R = sum(z1 * z2), summed over the pruning batches; S = θ**2 * |∂R/∂w|, where w is the pk
   copy's weight (θ**2, or θ for an entry the variant leaves as it is).

Everything else follows `variant`:

- `authors` (default) reproduces their rule, which goes by state-dict name, with pk and jvf in
  train mode: entries whose name contains `bn` (the BatchNorms the reference models name bn,
  bn1, bn2, ...) are left as they are, so they normalise with batch statistics; entries whose
  name contains `fc` (the classifier) are left as they are too, so the classifier keeps its
  signed θ in both copies; every other entry (conv and linear biases, and the BatchNorms not
  named `bn`, such as ResNet shortcuts' `shortcut.1` or torchvision's `downsample.1`, running
  statistics included) is squared in pk and set to 1 in jvf.

  Caveat, measured and proved in the tests: a train-mode BatchNorm fed identical rows (pk's
  all-ones input) gives every channel the spatial mean β whatever came before it, so when
  the last BatchNorms are followed only by linear maps (identity ReLUs, sums, shortcuts) and
  a global average pool (ResNet-20/18, VGG-16-BN, QuickNet), pk's output is the classifier's
  bias whatever the weights: ∂R/∂w is zero in exact arithmetic and the scores are
  floating-point rounding noise, in the authors' code too (docs/findings/px-batchnorm.md,
  benchmarks/README.md). This plugin
  reproduces that, and warns: in the first round of a prune it also scores in the other
  precision, and scores that depend on the weights agree to float32 precision while noise does
  not. Once the noise has emptied the classifier, the stem or a stage, every score is exactly
  0 and the driver's seeded tie-break draws the rest of the mask (it says so, per round).
  Measured on ResNet-20 (100 rounds, 100 Gaussian examples), float64: ties at the threshold in
  all 100 rounds, 4 and 3 of 22 layers empty at 98.2 and 99 % (the stem among them).

- `uniform` treats every BatchNorm alike whatever its name, squares and fills the classifier
  like any other layer, and gives pk a path kernel that depends on the weights:
  * pk runs in eval mode, and every BatchNorm is the per-channel affine map it computes there,
    x -> a x + c with a = γ / sqrt(running_var + eps) and c = β - a running_mean, treated
    like a conv/linear layer's weight and bias: pk uses a**2 and c**2. So pk is exactly the
    network with every linear coefficient squared, the object the path kernel is defined on,
    and its output depends on every unpruned weight (batch statistics of identical rows
    would erase that dependence, see the caveat).
  * jvf runs in train mode with every BatchNorm left as it is, the authors' treatment of
    their `bn` layers applied to all of them: with all weights 1 the activations grow by the
    fan-in at every layer, and batch statistics keep them finite; jvf carries no gradient,
    so its normalisation only weights pk's outputs.
  * every other entry (conv/linear weights and biases, the classifier's included) is squared
    in pk and set to 1 in jvf.
  The name-only fix (every BatchNorm left as is in train mode) would still be rounding noise;
  this is the nearest variant whose scores mean what the paper says they mean. Measured on
  ResNet-20 (100 rounds, 100 examples): it empties the residual branches of blocks 3, 6, 7, 8
  at 98.2 % (8 of 22 layers; 10 at 99 %, every residual conv at 99.9 %), since squared
  weights make paths through the identity shortcuts the cheapest; no layer empties on
  VGG-16-BN at 98.2 % and 99 %.

- `release-2024` is `PX.score` as the repository's first public release ran it (commit
  82ce2bf, April 2024, with the copies of its models whose ReLUs can be switched off,
  `lib/models/*_no_act.py`), the code closest to the paper:
  * one copy of the network with the masked weights θ ⊙ m copied in, put in train mode: act,
    jvf and pk all normalise with the batch statistics of the data; act runs with its ReLUs on
    and records their gates;
  * pk squares every state-dict entry whose name lacks `bn` (the classifier, the biases and
    the shortcut BatchNorms included; `bn*` BatchNorms as they are), turns the ReLUs off and
    runs on the pruning data x itself, not on all-ones rows, so its batch statistics vary
    and z2 depends on the weights;
  * jvf runs on x (not x**2) with the ReLUs off, each ReLU's output multiplied by act's gate.
    Its `p[m > 0].fill_(1.0)` assigns into a copy (advanced indexing), so jvf keeps the masked
    θ; as u * 1[u > 0] = relu(u) and both copies see the same batch, z1 is the network's own
    train-mode output, which is how this plugin computes it (one forward pass; a test checks
    it against the gated copy);
  * R = Σ over batches and examples of z1 * pk(x) (no one-row shortcut: pk's rows differ),
    and S = |∂R/∂w · w · θ · θ²| (their `p1.grad * p1 * p2 * p**2`), w = θ² pk's weight:
    |∂R/∂θ²| |θ|^5.
  Where pai-bench runs it otherwise, by the driver's shared rules: the pruning data are the
  trial's class-balanced split (theirs: the first `batch_limit` batches, 2 in their launch
  script, of the shuffled, augmented training loader); each round keeps round(d_r N) with
  ties drawn (theirs N - int((1 - d_r) N), dropping every tie); `dtype` is auto (float32,
  theirs, unless a round needs float64) or float64; ReLUs are found by interception on any ReLU network (their
  switchable copies exist for four architectures); pai-bench's ResNet-20 pools with
  `adaptive_avg_pool2d` (theirs `avg_pool2d(out, 8)`, equal in exact arithmetic). Measured
  beside their code on pai-bench's ResNet-20 (same weights, the same 100 Gaussian examples,
  one shot, on their counts): identical masks at 90 and 99 %, in float64 and in float32
  (`benchmarks/compare_authors.py --finding px-batchnorm`).

Determinism, measured with the authors' own code on ResNet-20 (100 examples, one shot, this
project's 2-core CPU): the 2024 release's mask is identical with 1 and 2 threads and with the
examples in order, reversed or permuted (Jaccard 1.000, at 90 and 99 %), the latest code's
is not (Jaccard 0.47 to 0.66 against its 2-thread, in-order mask): its scores are rounding
noise. Iterating amplifies rounding even where the scores depend on the weights: after 10
rounds at 99 % the 2024 code's masks with 1 and with 2 threads agree to Jaccard 0.41 only,
as each round's near-ties at the threshold change the network the next round scores.
pai-bench's `release-2024` on the same weights and batch, 10 rounds at 99 %: float32 (and so
`dtype=auto`, the default), Jaccard 0.410 between 1 and 2 threads, as theirs; `dtype=float64`,
identical masks, at 4.4 times the time (ResNet-20, one thread). Float64 pushes the flips further out, it does not rule them out: masks of many rounds are certain to
repeat only on one machine with one thread count, and layer collapse is measured and reported
for every variant, never required of PX (docs/findings/px-batchnorm.md).

Max-pools are not linearised in either copy (each takes the max of its own copy's values), as
in the authors' code.

ReLUs are found by a `TorchFunctionMode` (`ReluGates`) that intercepts, in call order, every
call of `F.relu`, `torch.relu`, `torch.relu_`, `Tensor.relu`/`relu_` and hence of `nn.ReLU`
modules (which call `F.relu`), so it works whether a model calls ReLU as a function or as a
module; the jvf pass must use exactly as many gates, of the same shapes, as the act pass
recorded. Other nonlinearities (GELU, sigmoid, ...) have no PX linearisation and are refused.

In `authors` and `uniform`, the pk network sees the same all-ones example in every row, so z2
is one row repeated (train-mode BatchNorm statistics over identical rows do not depend on
their number):
R = sum_b sum(z1_b * z2) = sum((sum of z1 over all examples) * z2_row), computed with one
forward and backward pass of pk on one all-ones row (two in train mode, for statistics)
instead of one per batch. In exact arithmetic this is the authors' R and gradient (see the
test against the literal per-batch form).

The copies are computed in `dtype`. `auto` (the default) scores a round in float32 and again in
float64 when float32 cannot decide it (`pai_bench.precision`), for `uniform` and
`release-2024`; `authors` scores in float32, the authors' precision, as its scores are rounding
noise in either. A float64 round costs a CPU 3 to 4 times a float32 one (jvf runs on the whole
pruning split). Measured on ResNet-20 (20 rounds, 100 examples, one thread): `uniform` gives
the masks of float64 (Jaccard 1.000 at 99 and 99.99 %) in a third of the time; `release-2024`
masks move with the precision as they do with the thread count (Jaccard 0.39 with float64's
at 99 %). `float64` and `float32` score every round in that precision.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from pai_bench.errors import UserError
from pai_bench.method import SCORE_DTYPES, ScoreMethod, check_choice
from pai_bench.plugins import register_method
from pai_bench.precision import auto_precision

VARIANTS = ("authors", "uniform", "release-2024")

#: The page that explains the authors' variant's warning, linked from the leaderboard.
FINDING = "docs/findings/px-batchnorm.md"

# Out-of-place and in-place ReLU entry points; nn.ReLU and F.relu_ reach one of these.
_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
_UNSUPPORTED: set[Callable] = {
    F.gelu, F.silu, F.elu, F.selu, F.celu, F.leaky_relu, F.leaky_relu_, F.relu6, F.hardtanh,
    F.hardtanh_, F.hardswish, F.hardsigmoid, F.mish, F.softplus, F.prelu, F.rrelu, F.glu,
    torch.sigmoid, torch.tanh, torch.Tensor.sigmoid, torch.Tensor.tanh,
}  # fmt: skip


@dataclass
class PXOptions:
    rounds: int = 100
    variant: str = "authors"  # authors | uniform | release-2024
    dtype: str = "auto"  # auto (float32, float64 where float32 cannot decide; authors: float32) | float64 | float32

    def __post_init__(self) -> None:
        check_choice("px.variant", self.variant, VARIANTS)
        check_choice("px.dtype", self.dtype, ("auto", *SCORE_DTYPES))


class ReluGates(TorchFunctionMode):
    """Intercepts every ReLU call, in order, while active.

    `record`: runs the ReLU and appends its gate 1[input > 0]; `gate`: replaces the i-th ReLU
    by multiplication with the i-th of `gates`; `identity`: replaces every ReLU by the
    identity. `calls` counts the ReLUs met.
    """

    def __init__(self, action: str, gates: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        if action not in ("record", "gate", "identity"):
            raise ValueError(f"unknown action {action!r}")
        self.action = action
        self.gates: list[torch.Tensor] = [] if gates is None else gates
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU or func in _RELU_INPLACE:
            positional = args[1] if len(args) > 1 else False
            inplace = func in _RELU_INPLACE or bool(kwargs.get("inplace", positional))
            return self._relu(func, args[0], inplace, args, kwargs)
        if func in _UNSUPPORTED:
            raise UserError(
                f"px linearises ReLU networks only; this model calls {getattr(func, '__name__', func)}"
            )
        return func(*args, **kwargs)

    def _relu(self, func, x, inplace, args, kwargs):
        index = self.calls
        self.calls += 1
        if self.action == "record":
            self.gates.append(x > 0)  # before the call: an in-place ReLU overwrites x
            return func(*args, **kwargs)
        if self.action == "identity":
            return x if inplace else x.clone()
        if index >= len(self.gates):
            raise RuntimeError(f"px: ReLU call {index + 1} has no recorded gate ({len(self.gates)} recorded)")
        gate = self.gates[index]
        if gate.shape != x.shape:
            raise RuntimeError(
                f"px: ReLU call {index + 1} has shape {tuple(x.shape)}, its gate {tuple(gate.shape)}"
            )
        return x.mul_(gate) if inplace else x * gate.to(x.dtype)

    def check_all_used(self) -> None:
        if self.calls != len(self.gates):
            raise RuntimeError(f"px: {self.calls} ReLU calls for {len(self.gates)} recorded gates")


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def linearised_entries(model: nn.Module, variant: str) -> list[tuple[str, torch.Tensor]]:
    """The state-dict entries that pk squares and jvf sets to 1 (each tensor once; the
    release-2024 jvf changes none)."""
    if variant in ("authors", "release-2024"):
        spared = ("bn", "fc") if variant == "authors" else ("bn",)
        candidates: Iterable[tuple[str, torch.Tensor]] = (
            (name, tensor)
            for name, tensor in model.state_dict(keep_vars=True).items()
            if not any(part in name for part in spared)
        )
    else:
        candidates = (
            (f"{module_name}.{name}" if module_name else name, tensor)
            for module_name, module in model.named_modules()
            if not _is_batchnorm(module)
            for name, tensor in [
                *module.named_parameters(recurse=False),
                *module.named_buffers(recurse=False),
            ]
        )
    seen: set[int] = set()
    entries = []
    for name, tensor in candidates:
        if tensor is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            entries.append((name, tensor))
    return entries


class ChannelAffine(nn.Module):
    """x -> scale * x + shift per channel (dim 1): a BatchNorm's eval-mode map, in pk."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(view) + self.shift.view(view)


def batchnorm_affine(module: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, c) of the eval-mode map x -> a x + c; a BatchNorm without running statistics is
    taken at mean 0 and variance 1."""
    ref = module.weight if module.weight is not None else module.running_var
    like = {"dtype": ref.dtype, "device": ref.device}
    n = module.num_features
    mean = module.running_mean if module.running_mean is not None else torch.zeros(n, **like)
    var = module.running_var if module.running_var is not None else torch.ones(n, **like)
    gamma = module.weight if module.weight is not None else torch.ones(n, **like)
    beta = module.bias if module.bias is not None else torch.zeros(n, **like)
    scale = gamma.detach() / torch.sqrt(var + module.eps)
    return scale, beta.detach() - scale * mean


def linearise(
    model: nn.Module, masks: Mapping[str, torch.Tensor], kind: str, variant: str, dtype: torch.dtype
) -> nn.Module:
    """A `dtype` copy of `model` as pk (`kind="pk"`) or jvf (`kind="jvf"`) for `variant`."""
    if variant == "release-2024" and kind == "jvf":
        raise ValueError("release-2024's jvf is the masked network itself (see release_2024_outputs)")
    out = copy.deepcopy(model).to(dtype).train()
    with torch.no_grad():
        for name, tensor in linearised_entries(out, variant):
            if kind == "pk":
                tensor.pow_(2)
            else:
                tensor.fill_(1)
            if name in masks:
                tensor.mul_(masks[name].to(tensor.device, tensor.dtype))
        if variant == "uniform" and kind == "pk":
            for name, module in list(out.named_modules()):
                if _is_batchnorm(module):
                    scale, shift = batchnorm_affine(module)
                    out.set_submodule(name, ChannelAffine(scale**2, shift**2))
            out.eval()
    return out


def pk_is_eval(pk: nn.Module) -> bool:
    return not any(module.training for module in pk.modules())


def release_2024_outputs(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], dtype: torch.dtype
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x, z1) per batch for release-2024: z1 = jvf(x), which is the masked network itself in
    train mode (see the module docstring), so one ReLU-on forward pass of a train-mode copy."""
    batches = list(batches)
    if any(len(x) < 2 for x, _ in batches):
        raise UserError("px.variant=release-2024 normalises with batch statistics: every pruning batch needs 2 examples or more")
    act = copy.deepcopy(model).to(dtype).train()
    with torch.no_grad():
        return [(x, act(x.to(dtype))) for x, _ in batches]


@register_method("px")
class PX(ScoreMethod):
    """S = θ**2 * |∂R/∂θ**2|, R = sum(jvf(x**2; gates of x) * pk(1)), summed over the batches."""

    Options = PXOptions

    def score(self, model, masks, batches, generator):
        if not batches:
            raise UserError("px needs pruning data")
        if self.options.dtype != "auto":
            return self._scores_in(model, masks, batches, SCORE_DTYPES[self.options.dtype])
        if self.options.variant == "authors":  # rounding noise in any precision: theirs
            return self._scores_in(model, masks, batches, torch.float32)
        return auto_precision(self, masks, lambda dtype: self._scores_in(model, masks, batches, dtype))

    def _scores_in(self, model, masks, batches, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        if self.options.variant == "release-2024":
            outputs = release_2024_outputs(model, batches, dtype)
            pk = linearise(model, masks, "pk", "release-2024", dtype)

            def scores_in(pk: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
                return self._release_2024_scores(model, pk, masks, outputs, dtype)

        else:
            z1_sums = self._z1_sums(model, masks, batches, dtype)
            pk = linearise(model, masks, "pk", self.options.variant, dtype)

            def scores_in(pk: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
                return self._scores(model, pk, masks, z1_sums, dtype)

        scores = scores_in(pk, dtype)
        # once per method instance (a prune by name makes a new one): in the first round
        if not getattr(self, "_checked", False):
            self._checked = True
            other = torch.float32 if dtype == torch.float64 else torch.float64
            self._warn_if_noise(scores, scores_in(copy.deepcopy(pk).to(other), other))
        return scores

    def _z1_sums(self, model, masks, batches, dtype) -> dict[tuple[int, ...], torch.Tensor]:
        """jvf(x**2) with the gates `act` (eval mode) records on x, summed over every example,
        one sum per example shape."""
        jvf = linearise(model, masks, "jvf", self.options.variant, dtype)
        act = model.eval()
        z1_sums: dict[tuple[int, ...], torch.Tensor] = {}
        with torch.no_grad():
            for x, _ in batches:
                recorder = ReluGates("record")
                with recorder:
                    act(x)
                gated = ReluGates("gate", recorder.gates)
                with gated:
                    z1 = jvf(x.to(dtype) ** 2)
                gated.check_all_used()
                shape = tuple(x.shape[1:])
                z1_sums[shape] = z1_sums[shape] + z1.sum(0) if shape in z1_sums else z1.sum(0)
        return z1_sums

    @staticmethod
    def _release_2024_scores(model, pk, masks, outputs, dtype) -> dict[str, torch.Tensor]:
        """S = |∂R/∂w · w · θ · θ²| with R = Σ_batches Σ z1 * pk(x) (ReLUs off, train mode),
        w = θ² pk's weight and θ the masked weight (what their jvf holds, see the docstring)."""
        params = dict(pk.named_parameters())
        weights = [params[name].requires_grad_(True) for name in masks]
        grads: list[torch.Tensor | None] = [None] * len(weights)
        for x, z1 in outputs:  # one graph per batch at a time, as their per-batch backward
            with torch.enable_grad(), ReluGates("identity"):
                part = (z1.to(dtype) * pk(x.to(dtype))).sum()
            for index, grad in enumerate(torch.autograd.grad(part, weights, allow_unused=True)):
                if grad is not None:
                    grads[index] = grad if grads[index] is None else grads[index] + grad
        model_params = dict(model.named_parameters())
        scores = {}
        for name, weight, grad in zip(masks, weights, grads):
            theta = model_params[name].detach().to(dtype)
            if grad is None:
                scores[name] = torch.zeros_like(theta)
            else:
                scores[name] = (grad * weight.detach() * theta * theta**2).abs()
        return scores

    @staticmethod
    def _scores(model, pk, masks, z1_sums, dtype) -> dict[str, torch.Tensor]:
        """S = θ² |∂R/∂w| with R = Σ (z1 summed over the examples) * pk(1)."""
        params = dict(pk.named_parameters())
        weights = [params[name].requires_grad_(True) for name in masks]
        with torch.enable_grad():
            total = 0
            for shape, z1_sum in z1_sums.items():
                # train-mode BatchNorm (authors) needs two rows to have statistics
                rows = 1 if pk_is_eval(pk) else 2
                ones = torch.ones((rows, *shape), dtype=dtype, device=z1_sum.device)
                with ReluGates("identity"):
                    z2 = pk(ones)
                total = total + (z1_sum.to(dtype) * z2[0]).sum()
            grads = torch.autograd.grad(total, weights, allow_unused=True)
        model_params = dict(model.named_parameters())
        scores = {}
        for name, grad in zip(masks, grads):
            theta_sq = model_params[name].detach().to(dtype) ** 2
            scores[name] = theta_sq * grad.abs() if grad is not None else torch.zeros_like(theta_sq)
        return scores

    def _warn_if_noise(self, scores: Mapping[str, torch.Tensor], again: Mapping[str, torch.Tensor]) -> None:
        """Warn when the scores are rounding noise: a kernel that depends on the weights gives
        the same scores in float32 and float64 up to float32's precision; noise does not. The
        gap is relative to the smaller of the two, so noise far larger in one precision shows."""
        size = min(sum(float(score.double().abs().sum()) for score in found.values()) for found in (scores, again))
        gap = sum(float((scores[name].double() - again[name].double()).abs().sum()) for name in scores)
        self.disagreement = gap / size if size > 0 else float("inf")
        self.extras["score_precision_gap"] = self.disagreement
        if self.disagreement > 0.1:
            warnings.warn(
                f"px (variant={self.options.variant}): its scores are rounding noise (in float32 "
                f"and float64 they differ by {self.disagreement:.1e} times their size): pk's output "
                "does not depend on the weights, as train-mode BatchNorm normalises its all-ones "
                "input to constants; px.variant=release-2024 (the authors' first release) and "
                "px.variant=uniform (the path kernel) score the weights; see "
                f"{FINDING}",
                RuntimeWarning,
                stacklevel=2,
            )
