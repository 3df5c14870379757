"""Sanity-check ablations for any mask method (Frankle et al., ICLR 2021, "Pruning Neural
Networks at Initialization: Why Are We Missing the Mark?").

- `shuffle`: each layer's mask randomly permuted within the layer: the same per-layer counts,
  positions at random. A method that keeps its accuracy shuffled chose layer densities, not
  weights. (The Synaptic-Flow repo's shuffle rebinds a local and changes nothing; this one is
  tested to move the kept positions.)
- `reinit`: the same masks on freshly initialised weights (another init seed).
- `invert`: keep the lowest scores instead of the highest, in every round (the driver's
  `invert`).

For a trajectory method (imp) shuffle and reinit are the lottery ticket's own controls
(Frankle & Carbin, ICLR 2019): the mask its trajectory reached at the sparsity, shuffled or on
fresh weights, trained as a trial. Invert does not apply: it has no scores at initialisation.

An ablated trial is a trial like any other with its own key; the leaderboard shows it as
`snip (shuffled)` and tests it against the unablated method.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

from pai_bench.errors import unknown_choice
from pai_bench.masks import Masks
from pai_bench.method import ScoreMethod, TrajectoryMethod
from pai_bench.plugins import method_class

ABLATIONS = ("shuffle", "reinit", "invert")
#: The ablations of a trajectory method's masks.
TRAJECTORY_ABLATIONS = ("shuffle", "reinit")
LABELS = {"shuffle": "shuffled", "reinit": "reinitialised", "invert": "inverted"}


def check_ablation(name: str) -> str:
    if name not in ABLATIONS:
        raise unknown_choice("ablation", name, ABLATIONS)
    return name


def applies_to(method: str, ablation: str | None = None) -> bool:
    """Whether `ablation` (None: any ablation) applies to `method`. Ablations need masks chosen
    by scores (not dense, not architecture methods) or by a trajectory (imp: not invert)."""
    cls = method_class(method)
    if issubclass(cls, TrajectoryMethod):
        return ablation is None or ablation in TRAJECTORY_ABLATIONS
    return issubclass(cls, ScoreMethod) and not cls.keeps_everything


def row_label(method: str, ablation: str | None) -> str:
    return f"{method} ({LABELS[ablation]})" if ablation else method


def shuffle_masks(masks: Mapping[str, torch.Tensor], generator: torch.Generator) -> Masks:
    """Each mask's entries permuted at random within its layer."""
    shuffled = {}
    for name, mask in masks.items():
        flat = mask.reshape(-1)
        order = torch.randperm(flat.numel(), generator=generator, device=generator.device).to(flat.device)
        shuffled[name] = flat[order].view_as(mask)
    return shuffled


def reinit_seed(seed: int) -> int:
    """The init seed of a `reinit` trial: a function of the trial's seed that no trial's own
    init seed (0, 1, 2, ...) collides with in practice."""
    digest = hashlib.sha256(f"pai-bench reinit {seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big") | 1 << 32
