"""torchvision's ImageNet ResNets, randomly initialised or pretrained for transfer learning.

Pretrained weights come either from torchvision's own download (`weights="IMAGENET1K_V1"`)
or, on machines that cannot reach it, from a state dict file the user copied there
(`weights=PATH`). Either way they are loaded into the 1000-class model and the classifier is
then replaced by a fresh one for the target classes, so pruning sees a pretrained backbone
and an untrained head.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from pai_bench.errors import UserError
from pai_bench.models import load_matching_state_dict, register_model

IMAGENET_CLASSES = 1000

# Endings that mark a weights value as a file path even when no such file exists.
_STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _build(arch: str, num_classes: int, weights: str | None) -> nn.Module:
    constructor = getattr(torchvision.models, arch)
    if weights is None:
        return constructor(weights=None, num_classes=num_classes)
    model = constructor(weights=None, num_classes=IMAGENET_CLASSES)
    load_matching_state_dict(model, _pretrained_state_dict(arch, weights), f"weights {weights!r}")
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def _pretrained_state_dict(arch: str, weights: str) -> Mapping[str, torch.Tensor]:
    source = _weights_source(arch, weights)
    if isinstance(source, Path):
        return _load_file(source)
    return _download(arch, source)


def _weights_source(arch: str, weights: str) -> Path | torchvision.models.WeightsEnum:
    """The file `weights` names, or torchvision's weights of that name; a `UserError` otherwise."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    enum = torchvision.models.get_model_weights(arch)
    if weights in enum.__members__:
        return enum[weights]
    if path.suffix in _STATE_DICT_SUFFIXES or "/" in weights or "\\" in weights:
        raise UserError(f"weights file not found: {path}")
    valid = ", ".join(enum.__members__)
    raise UserError(
        f"unknown weights {weights!r} for torchvision-{arch}; "
        f"valid choices: {valid}, or a path to a state dict file"
    )


def check_weights(model: str, weights: str) -> None:
    """Fail now, offline and without reading the file, on `model.weights` a trial could not use,
    rather than in every trial of a suite."""
    arch = _ARCHS.get(model)
    if arch is None:
        raise UserError(
            f"model {model!r} has no pretrained weights; model.weights works with {', '.join(_ARCHS)}"
        )
    _weights_source(arch, weights)


def _download(arch: str, weights: torchvision.models.WeightsEnum) -> Mapping[str, torch.Tensor]:
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as error:
        raise UserError(
            f"could not download torchvision {arch} weights {weights.name} "
            f"({_first_line(error)}); "
            "pass model.weights=PATH to a local state dict file instead"
        ) from None


def _load_file(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        state_dict = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise UserError(f"cannot read weights file {path}: {_first_line(error)}") from None
    if not isinstance(state_dict, Mapping):
        raise UserError(f"weights file {path} holds a {type(state_dict).__name__}, not a state dict")
    return state_dict


def _first_line(error: BaseException) -> str:
    """Torch's errors run to many lines; a `UserError` is printed as one."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


#: Registered name -> torchvision architecture.
_ARCHS = {"torchvision-resnet18": "resnet18", "torchvision-resnet50": "resnet50"}


@register_model("torchvision-resnet18")
def resnet18(num_classes: int, weights: str | None = None) -> nn.Module:
    return _build("resnet18", num_classes, weights)


@register_model("torchvision-resnet50")
def resnet50(num_classes: int, weights: str | None = None) -> nn.Module:
    return _build("resnet50", num_classes, weights)
