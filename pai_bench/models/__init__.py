"""The model zoo: every network a suite can name, built by one function.

Pruning-at-initialization scores depend on the exact initial weights, so `build_model` can
pin them to a seed without disturbing the caller's random stream, and the architectures keep
Synaptic-Flow's parameter names so that its saved checkpoints and masks load one-to-one.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from pai_bench.errors import UserError
from pai_bench.registry import Registry

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")
register_model = MODELS.register

# How many offending keys an error lists: enough to see the pattern, short enough to read.
_KEYS_SHOWN = 5


def build_model(
    name: str, num_classes: int = 10, seed: int | None = None, **options: object
) -> nn.Module:
    """Build model `name` with a `num_classes`-way classifier.

    With `seed`, the initial weights are a function of the seed alone: the build runs on a
    forked RNG, so two runs with one seed prune the same network and the caller's own random
    stream (data order, later draws) is the same as if no model had been built.

    The model's `build_spec` attribute records the call (`name`, `num_classes`, `options`; not
    the seed, which only sets the initial weights).
    """
    builder = MODELS.get(name)
    _check_options(name, builder, options)
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    if seed is None:
        model = builder(num_classes=num_classes, **options)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = builder(num_classes=num_classes, **options)
    model.build_spec = {"name": name, "num_classes": num_classes, "options": dict(options)}
    return model


def list_models() -> list[str]:
    return MODELS.names()


def accepts_widths(name: str) -> bool:
    """Whether model `name`'s builder takes explicit per-layer `widths`."""
    return "widths" in inspect.signature(MODELS.get(name)).parameters


def list_width_models() -> list[str]:
    """The models whose layer widths can be set one by one (`widths=[...]`)."""
    return [name for name in MODELS.names() if accepts_widths(name)]


def _check_options(name: str, builder: ModelBuilder, options: Mapping[str, object]) -> None:
    """Fail on a misspelt option with the valid ones, instead of Python's bare TypeError."""
    valid = [p for p in inspect.signature(builder).parameters if p != "num_classes"]
    bad = sorted(set(options) - set(valid))
    if bad:
        shown = ", ".join(repr(option) for option in bad)
        choices = ", ".join(valid) or "(none)"
        raise UserError(f"unknown option {shown} for model {name!r}; valid options: {choices}")


def scale_width(width: int, multiplier: float) -> int:
    """A layer width times `width_multiplier`, kept a whole number of channels (at least 1)."""
    if multiplier <= 0:
        raise UserError(f"width_multiplier must be positive, got {multiplier}")
    return max(1, round(width * multiplier))


def resolve_widths(
    widths: Sequence[int] | None, base: Sequence[int], multiplier: float, what: str
) -> list[int]:
    """The widths a builder uses: `widths` as given, else each of `base` times `multiplier`.

    `what` names the widths for the error message (e.g. "the three stage widths").
    """
    if widths is None:
        return [scale_width(width, multiplier) for width in base]
    if multiplier != 1.0:
        raise UserError(f"pass widths or width_multiplier, not both (got width_multiplier={multiplier})")
    values = list(widths)
    if len(values) != len(base) or not all(
        isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in values
    ):
        raise UserError(f"widths must be {len(base)} positive integers ({what}), got {values!r}")
    return [int(w) for w in values]


def load_reference_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a checkpoint saved from Synaptic-Flow's masked models into the matching model here.

    Their layers keep the pruning mask beside each weight (`X.weight_mask`), so the effective
    weight is the product; ours store it directly. Their identity shortcuts carry a weight of
    ones that our parameter-free identities do not have: it is dropped, unless it was pruned,
    since that network is not one ours can express.
    """
    own_keys = model.state_dict().keys()
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith("_mask") and key[: -len("_mask")] in state_dict:
            continue  # applied to its tensor below
        mask = state_dict.get(key + "_mask")
        effective = value * mask if mask is not None else value
        if key not in own_keys and key.endswith("shortcut.weight"):
            if not bool(torch.all(effective == 1)):
                raise UserError(
                    f"reference identity shortcut {key!r} is pruned or scaled; "
                    "this model's identity shortcuts have no weights to hold that"
                )
            continue
        converted[key] = effective
    load_matching_state_dict(model, converted, "reference state dict")


def load_matching_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str
) -> None:
    """`model.load_state_dict(strict=True)`, failing with a short list of what does not match."""
    own = model.state_dict()
    problems = []
    unexpected = [key for key in state_dict if key not in own]
    missing = [key for key in own if key not in state_dict]
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}"
        for key in own
        if key in state_dict and state_dict[key].shape != own[key].shape
    ]
    for label, keys in (("unexpected", unexpected), ("missing", missing), ("shape", mismatched)):
        if keys:
            more = f" and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else ""
            problems.append(f"{label}: {', '.join(keys[:_KEYS_SHOWN])}{more}")
    if problems:
        raise UserError(f"{source} does not match the model ({'; '.join(problems)})")
    model.load_state_dict(state_dict, strict=True)


# The architectures register themselves on import; they need the names above, hence last.
from pai_bench.models import (  # noqa: E402, F401
    cifar_resnet,
    quicknet,
    tiny_resnet,
    torchvision_resnet,
    vgg,
)
