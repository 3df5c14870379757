"""The pruning driver: the rules every method is measured under.

A method only scores weights. This module decides which weights are prunable, runs the rounds
of the exponential density schedule, keeps exactly round((1 - s) * N) weights, scores on a deep
copy, fresh each round unless the method says it may reuse one (the caller's model, its
buffers and the global RNG are left as they were), and reports
per-layer statistics.

Weights tied at the threshold are picked by a draw seeded with the trial's seed: the count is
exact and the same seed gives the same mask, and when a method's scores say nothing (all
zero, as PX's on BatchNorm networks, or a signal that vanished once a layer emptied) the mask
is a uniform random one, as rounding noise would give, rather than the first layers in
parameter order kept whole and the last emptied. A weight the tie-break keeps was still not
chosen by its score: the driver counts those in every round and warns when they are a visible
share of a round's mask, so such a mask never passes for the method's.
"""

from __future__ import annotations

import copy
import functools
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from pai_bench.errors import UserError
from pai_bench.masks import LayerStat, Masks, apply_masks, architecture_stats, full_masks, kept_count, layer_stats, prunable_parameters
from pai_bench.method import ArchitectureMethod, Batch, Method, ScoreMethod, TrajectoryMethod
from pai_bench.order import kth_largest
from pai_bench.plugins import create_method
from pai_bench.variants import method_options


@dataclass
class PruneResult:
    """What `prune` returns.

    `model` is the network to train: a copy of the input with masked weights zeroed, or a new
    smaller network for architecture methods (then `masks` is empty, `layer_stats` compares the
    small model's layers with the input's, and `extras` holds what the method chose).
    """

    model: nn.Module
    masks: Masks
    layer_stats: list[LayerStat]
    method: str
    sparsity: float
    options: dict[str, Any]
    seconds: float
    rounds: int = 1
    extras: dict[str, Any] = field(default_factory=dict)
    tie_break: TieBreak | None = None

    @property
    def kept(self) -> int:
        return sum(stat.kept for stat in self.layer_stats)

    @property
    def total(self) -> int:
        return sum(stat.total for stat in self.layer_stats)


#: Share of a round's kept weights chosen by the tie-break above which `prune` warns.
TIE_BREAK_WARNING_SHARE = 0.01
#: Added to the trial's seed for the tie-break's generator (any constant; fixed so masks repeat).
TIE_BREAK_SEED_OFFSET = 0x7E1B


@dataclass
class TieBreak:
    """The round whose mask the tie-break decided most: `arbitrary` of its `kept` weights were
    drawn from `tied` weights of equal score at the threshold."""

    round: int
    rounds: int
    arbitrary: int
    kept: int
    tied: int
    rounds_affected: int

    @property
    def share(self) -> float:
        return self.arbitrary / self.kept if self.kept else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share}


@dataclass
class Selection:
    """New masks, and how many of their kept weights the tie-break picked among how many tied."""

    masks: Masks
    arbitrary: int = 0
    tied: int = 0


def check_sparsity(sparsity: float) -> float:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise UserError(f"sparsity {sparsity!r} is outside [0, 1): it is the fraction of weights removed")
    return float(sparsity)


def check_kept(total: int, sparsity: float, model: str = "the model") -> None:
    """A sparsity that keeps no weight leaves a network that outputs a constant: bad input."""
    if sparsity > 0 and kept_count(total, sparsity) == 0:
        raise UserError(
            f"sparsity {sparsity:.10g} keeps round((1 - s) * N) = 0 of the N = {total:,} prunable weights of {model}; "
            f"the largest sparsity that keeps one is {1 - 1 / total:.10g}"
        )


def schedule(total: int, sparsity: float, rounds: int) -> list[int]:
    """Kept counts after each round: density_r = d ** ((r + 1) / rounds), the last exact."""
    density = 1.0 - sparsity
    counts = [int(round(total * density ** ((r + 1) / rounds))) for r in range(rounds - 1)]
    return counts + [kept_count(total, sparsity)]


def top_k_mask(scores: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool mask of exactly `k` entries with the highest scores.

    Entries tied at the threshold are drawn with `generator` (a CPU generator), or without one
    taken from the lowest flat index; either way the count is exact and the same scores (and
    generator state) always give the same mask. NaN scores rank lowest.
    """
    return top_k(scores, k, generator).masks


def top_k(scores: torch.Tensor, k: int, generator: torch.Generator | None = None) -> Selection:
    """`top_k_mask` as a `Selection`: with the number of kept entries the tie-break picked,
    when more entries tie at the threshold than there are places left above it."""
    flat = scores.reshape(-1)
    flat = torch.nan_to_num(flat if flat.is_floating_point() else flat.to(torch.float64), nan=-torch.inf)
    n = flat.numel()
    if k <= 0:
        return Selection(torch.zeros_like(flat, dtype=torch.bool).view_as(scores))
    if k >= n:
        return Selection(torch.ones_like(flat, dtype=torch.bool).view_as(scores))
    threshold = kth_largest(flat, k)
    keep = flat > threshold
    missing = k - int(keep.sum())
    at_threshold = torch.nonzero(flat == threshold).flatten()
    tied = at_threshold.numel()
    if tied <= missing:  # every tied entry fits: the scores decided
        keep[at_threshold] = True
        return Selection(keep.view_as(scores))
    if generator is not None:
        at_threshold = at_threshold[torch.randperm(tied, generator=generator).to(at_threshold.device)]
    keep[at_threshold[:missing]] = True
    return Selection(keep.view_as(scores), missing, tied)


def integer_budgets(sizes: Mapping[str, int], densities: Mapping[str, float], total_kept: int) -> dict[str, int]:
    """Per-layer kept counts from densities, summing exactly to `total_kept`.

    Floors first, then the largest remainders get the leftover weights (never above a layer's
    size), so layer-wise allocations meet the same exact global count as global top-k.
    """
    wanted = {name: min(1.0, max(0.0, densities[name])) * sizes[name] for name in sizes}
    budgets = {name: int(wanted[name]) for name in sizes}
    leftover = total_kept - sum(budgets.values())
    by_remainder = sorted(sizes, key=lambda name: (-(wanted[name] - budgets[name]), name))
    while leftover > 0:
        progressed = False
        for name in by_remainder:
            if leftover == 0:
                break
            if budgets[name] < sizes[name]:
                budgets[name] += 1
                leftover -= 1
                progressed = True
        if not progressed:
            raise ValueError("layer budgets cannot hold the requested count")
    while leftover < 0:
        for name in reversed(by_remainder):
            if leftover == 0:
                break
            if budgets[name] > 0:
                budgets[name] -= 1
                leftover += 1
    return budgets


def select(
    scores: Mapping[str, torch.Tensor],
    masks: Masks,
    keep: int,
    budgets: Mapping[str, int] | None = None,
    generator: torch.Generator | None = None,
) -> Selection:
    """New masks keeping `keep` weights: globally, or per layer when `budgets` are given; ties
    at a threshold drawn with `generator` (see `top_k_mask`).

    A pruned weight never comes back: per layer it scores -inf; globally only the weights
    still kept are ranked (at the end of a 100-round schedule a hundredth of the network).
    """
    names = list(masks)
    for name in names:
        if scores[name].shape != masks[name].shape:
            raise ValueError(f"score for {name} has shape {tuple(scores[name].shape)}, expected {tuple(masks[name].shape)}")
    if budgets is not None:
        per_layer = {}
        for name in names:
            score = scores[name].detach().to(torch.float64)
            ranked = torch.where(masks[name].to(score.device), score, torch.full_like(score, -torch.inf))
            per_layer[name] = top_k(ranked, budgets[name], generator)
        return Selection(
            {name: chosen.masks.to(masks[name].device) for name, chosen in per_layer.items()},
            sum(chosen.arbitrary for chosen in per_layer.values()),
            sum(chosen.tied for chosen in per_layer.values()),
        )
    device = scores[names[0]].device
    # One precision for all (float32 to float64 is exact, so the ranking is the same).
    dtype = torch.promote_types(torch.float32, functools.reduce(torch.promote_types, (scores[name].dtype for name in names)))
    flat = torch.cat([scores[name].detach().reshape(-1).to(device, dtype) for name in names])
    alive = torch.cat([masks[name].reshape(-1).to(device) for name in names])
    if bool(alive.all()):  # the first round: every weight is a candidate
        chosen = top_k(flat, keep, generator)
        kept = chosen.masks
    else:
        candidates = torch.nonzero(alive).flatten()
        if keep > candidates.numel():
            raise ValueError(f"a round asks to keep {keep:,} weights but only {candidates.numel():,} are still kept")
        chosen = top_k(flat[candidates], keep, generator)
        kept = torch.zeros_like(flat, dtype=torch.bool)
        kept[candidates[chosen.masks]] = True
    out, offset = {}, 0
    for name in names:
        size = masks[name].numel()
        out[name] = kept[offset : offset + size].view_as(masks[name]).to(masks[name].device)
        offset += size
    return Selection(out, chosen.arbitrary, chosen.tied)


def compute_masks(
    model: nn.Module,
    method: ScoreMethod,
    sparsity: float,
    batches: Sequence[Batch],
    seed: int = 0,
    exclude: Iterable[str] = (),
    invert: bool = False,
) -> tuple[Masks, TieBreak | None]:
    """Masks for `model` at `sparsity`, scored on deep copies; `model` is never modified; and
    the round the tie-break decided most (None when every kept weight was chosen by its score).

    `invert` keeps the lowest scores instead of the highest, in every round (the sanity check
    of Frankle et al., ICLR 2021: a score that means something should do worse inverted).
    """
    params = prunable_parameters(model, exclude)
    if not params:
        raise UserError(f"model {type(model).__name__} has no prunable (conv or linear) weights")
    masks = full_masks(params)
    if sparsity == 0.0:
        return masks, None
    sizes = {name: p.numel() for name, p in params.items()}
    total = sum(sizes.values())
    check_kept(total, sparsity, type(model).__name__)
    rounds = method.rounds()
    if rounds < 1:
        raise UserError(f"{method.name}.rounds={rounds} must be at least 1")
    generator = torch.Generator(device=_device_of(model)).manual_seed(seed)
    # Its own stream, so that ties never shift the draws a method makes with `generator`.
    tie_generator = torch.Generator().manual_seed(TIE_BREAK_SEED_OFFSET + seed)
    worst: TieBreak | None = None
    affected = 0
    reused = ReusedCopy(model) if method.reuses_copy else None
    for index, keep in enumerate(schedule(total, sparsity, rounds)):
        if method.reads_only and index == 0:
            working = model  # every weight still kept: the network is its own masked copy
        else:
            working = reused.fresh() if reused is not None else copy.deepcopy(model)
            apply_masks(working, masks)
        method.target_kept = keep
        method.inverted = invert
        scores = method.score(working, masks, batches, generator)
        missing = set(masks) - set(scores)
        if missing:
            raise ValueError(f"{method.name} returned no score for {sorted(missing)[:3]}")
        if invert:
            scores = {name: -score.detach().to(torch.float64) for name, score in scores.items()}
        densities = method.layer_densities({n: p.shape for n, p in params.items()}, keep / total)
        budgets = integer_budgets(sizes, densities, keep) if densities is not None else None
        chosen = select(scores, masks, keep, budgets, tie_generator)
        masks = chosen.masks
        if chosen.arbitrary:
            affected += 1
            if worst is None or chosen.arbitrary / keep > worst.share:
                worst = TieBreak(index + 1, rounds, chosen.arbitrary, keep, chosen.tied, 0)
    if worst is None:
        return masks, None
    worst.rounds_affected = affected
    if worst.share > TIE_BREAK_WARNING_SHARE:
        warnings.warn(
            f"{method.name}: in round {worst.round} of {rounds}, {worst.arbitrary:,} of the "
            f"{worst.kept:,} kept weights ({worst.share:.1%}) were drawn at random from "
            f"{worst.tied:,} weights of equal score: the scores do not rank them "
            f"({affected} of {rounds} rounds had such ties)",
            RuntimeWarning,
            stacklevel=3,
        )
    return masks, worst


class ReusedCopy:
    """One deep copy of a network for every round of a `reuses_copy` method: `fresh()` writes
    the network's values, `requires_grad` and train/eval mode back into it, in the dtype the
    method converted it to, without the Python-level cost of a new deep copy."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model)
        self._tensors = []  # (the copy's dict holding the tensor, its key, the original tensor)
        self._modes = []
        for copied, original in zip(self.model.modules(), model.modules()):
            self._modes.append((copied, original.training))
            for key, tensor in original._parameters.items():
                if tensor is not None:
                    self._tensors.append((copied._parameters, key, tensor))
            for key, tensor in original._buffers.items():
                if tensor is not None:
                    self._tensors.append((copied._buffers, key, tensor))

    @torch.no_grad()
    def fresh(self) -> nn.Module:
        for owner, key, original in self._tensors:
            tensor = owner[key]
            tensor.copy_(original)
            if isinstance(tensor, nn.Parameter):
                tensor.requires_grad_(original.requires_grad)
                tensor.grad = None
        for module, training in self._modes:
            module.training = training
        return self.model


def prune(
    model: nn.Module,
    method: str | Method,
    sparsity: float,
    data: Iterable[Batch],
    seed: int = 0,
    exclude: Iterable[str] = (),
    invert: bool = False,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> PruneResult:
    """Prune `model` with `method` at `sparsity` (the fraction of prunable weights removed).

    `data` is an iterable of (inputs, targets) batches, the pruning data; `options` override the
    method's options (e.g. `rounds=50`). The input model is left bit-identical, and the global
    RNG state too: the method runs under a forked RNG seeded with `seed`. An architecture method
    (`scratch-e`) returns a new model with no masks; `exclude` does not apply to it. `invert`
    keeps the lowest-scoring weights (an ablation; not for architecture methods). `method` may
    name a variant of `variants` (`{"px-uniform": {"method": "px", "variant": "uniform"}}`, or a
    loaded suite's `config.variants`): its base method runs with its options, `options` on top.
    """
    sparsity = check_sparsity(sparsity)
    if isinstance(method, str):
        method = create_method(*method_options(method, variants, options))
    elif options:
        raise TypeError("pass options either in the Method instance or as keywords, not both")
    if method.keeps_everything and sparsity != 0.0:
        raise UserError(f"method {method.name!r} keeps every weight; its sparsity must be 0, got {sparsity}")
    if isinstance(method, TrajectoryMethod):
        raise UserError(
            f"{method.name} trains inside pruning: it runs as a trajectory of a suite (methods=[...,{method.name}], "
            "pai_bench.trajectory), not on an untrained network"
        )
    exclude = list(exclude)
    if isinstance(method, ArchitectureMethod) and exclude:
        raise UserError(
            f"prune.exclude={exclude} does not apply to {method.name!r}: it builds a new model rather than masking this one"
        )
    if isinstance(method, ArchitectureMethod) and invert:
        raise UserError(f"invert does not apply to {method.name!r}: it builds a new model and scores no weights")
    if data is None or isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise UserError(
            f"prune({method.name!r}) got data={data!r}: pass the pruning data, an iterable of (inputs, targets) "
            "batches, e.g. [(x, y)] (data-free methods ignore it; an empty list will do for them)"
        )
    device = _device_of(model)
    batches = [(x.to(device), y.to(device)) for x, y in data]
    method.extras = {}
    tie_break = None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        # `seconds` is the time to choose: the architecture, or the masks (not the masked copy
        # returned beside them, which no method's own code makes).
        started = time.perf_counter()
        if isinstance(method, ArchitectureMethod):
            small = method.build(model, sparsity, batches, seed)
            seconds = time.perf_counter() - started
            masks: Masks = {}
            stats: list[LayerStat] = architecture_stats(model, small)
        elif isinstance(method, ScoreMethod):
            masks, tie_break = compute_masks(model, method, sparsity, batches, seed, exclude, invert)
            seconds = time.perf_counter() - started
            small = copy.deepcopy(model)
            apply_masks(small, masks)
            stats = layer_stats(masks)
        else:
            raise TypeError(f"{type(method).__name__} is neither a ScoreMethod nor an ArchitectureMethod")
    return PruneResult(
        model=small,
        masks=masks,
        layer_stats=stats,
        method=method.name,
        sparsity=sparsity,
        options=method.option_values(),
        seconds=seconds,
        rounds=method.rounds() if isinstance(method, ScoreMethod) else 1,
        extras=dict(method.extras),
        tie_break=tie_break,
    )


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
