"""The typed configuration of a suite run, and the `key=value` overrides applied to it.

Every knob is a dataclass field with a default and a comment, grouped by concern; OmegaConf
checks types and unknown keys against these dataclasses, so the YAML suites, the CLI
overrides and the recorded trial configs are all one schema. An override whose first part is
a method's name sets that method's option (`px.rounds=50` -> `options.px.rounds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pai_bench.bundled import bundled_folder
from pai_bench.errors import UserError, unknown_choice
from pai_bench.plugins import list_methods, resolve_options

EXECUTORS = ("local",)


@dataclass
class ModelConfig:
    name: str = "resnet20"  # a registered model (`pai-bench list models`)
    weights: Optional[str] = None  # pretrained: a torchvision weights name or a state-dict path


@dataclass
class DataConfig:
    name: str = "cifar10"  # a registered dataset (`pai-bench list datasets`)
    root: Optional[str] = None  # where the files are; default $PAI_BENCH_DATA/<name> or ~/.cache/pai-bench/data/<name>
    download: bool = True  # fetch the dataset when it is missing and the machine is online
    image_size: Optional[int] = None  # resize stored images to this square size (folder datasets)
    input_size: Optional[int] = None  # resize each batch to this size before the model (transfer: 224)
    subset: Optional[int] = None  # train on a class-stratified subset of this many images
    augment: str = "crop-flip"  # none | crop-flip | rrc-flip
    padding: int = 4  # crop padding for crop-flip
    prune_per_class: int = 10  # pruning split: examples per class, drawn once per seed


@dataclass
class TrainConfig:
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [80, 120])  # epochs where lr *= gamma
    gamma: float = 0.1
    eval_batch_size: int = 1000  # does not change results
    device: str = "auto"  # auto | cpu | cuda | cuda:N; does not change the trial key


@dataclass
class PruneConfig:
    exclude: list[str] = field(default_factory=list)  # glob patterns of weights kept dense, e.g. fc.weight


@dataclass
class SuiteConfig:
    suite: str = "custom"  # the suite's name (set from suite=NAME)
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    methods: list[str] = field(default_factory=lambda: ["dense", "random", "magnitude"])
    sparsities: list[float] = field(default_factory=lambda: [0.9])  # fraction of weights removed
    seeds: int = 5  # seeds 0..seeds-1, shared by all methods (same init and pruning split)
    options: dict[str, Any] = field(default_factory=dict)  # per-method options: {px: {rounds: 50}}
    executor: str = "local"  # local
    out: Optional[str] = None  # results folder; default runs/<suite>


def suites_folder() -> Path:
    return bundled_folder("suites")


def list_suites() -> list[str]:
    return sorted(path.stem for path in suites_folder().glob("*.yaml"))


def suite_path(name: str) -> Path:
    """A built-in suite by name, or a YAML file by path."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = suites_folder() / f"{name}.yaml"
    if not path.is_file():
        raise unknown_choice("suite", name, list_suites())
    return path


def parse_overrides(overrides: list[str]) -> tuple[str | None, list[str]]:
    """Split `suite=NAME` from the other `key=value` overrides, rejecting malformed ones."""
    suite, rest = None, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or any(c.isspace() for c in key):
            raise UserError(f"malformed override {item!r}: expected key=value, e.g. train.epochs=1")
        if key == "suite":
            suite = value
        else:
            rest.append(item)
    return suite, rest


def load_config(suite: str | None, overrides: list[str] = ()) -> SuiteConfig:
    """The validated config of `suite` (a name or YAML path; None = defaults) plus overrides."""
    schema = OmegaConf.structured(SuiteConfig)
    layers: list[DictConfig] = [schema]
    if suite is not None:
        path = suite_path(suite)
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
        if not isinstance(data, dict):
            raise UserError(f"suite file {path} must hold a mapping, not {type(data).__name__}")
        data.setdefault("suite", path.stem)
        layers.append(_create(data, f"suite {path}"))
    layers.append(_create(_dotlist_to_dict(list(overrides)), "overrides"))
    try:
        merged = OmegaConf.merge(*layers)
    except ConfigKeyError as error:
        raise UserError(_unknown_key_message(error, schema)) from None
    except OmegaConfBaseException as error:
        raise UserError(f"bad config value: {_first_line(error)}") from None
    config: SuiteConfig = OmegaConf.to_object(merged)
    validate(config)
    return config


def validate(config: SuiteConfig) -> None:
    """Checks OmegaConf's types cannot express: names that must be registered, ranges."""
    from pai_bench.data import list_datasets
    from pai_bench.models import list_models

    methods = list_methods()
    for method in config.methods:
        if method not in methods:
            raise unknown_choice("method", method, methods)
    if not config.methods:
        raise UserError("methods is empty; name at least one method")
    for name, options in config.options.items():
        if name not in methods:
            raise unknown_choice("method (in options)", name, methods)
        if not isinstance(options, dict):
            raise UserError(f"options.{name} must be a mapping of option=value, got {options!r}")
        resolve_options(name, options)
    for sparsity in config.sparsities:
        if not 0.0 <= sparsity < 1.0:
            raise UserError(f"sparsity {sparsity} is outside [0, 1): it is the fraction of weights removed")
    if config.seeds < 1:
        raise UserError(f"seeds={config.seeds}: need at least one seed")
    if config.executor not in EXECUTORS:
        raise unknown_choice("executor", config.executor, EXECUTORS)
    if config.model.name not in list_models():
        raise unknown_choice("model", config.model.name, list_models())
    if config.data.name not in list_datasets():
        raise unknown_choice("dataset", config.data.name, list_datasets())
    if config.train.epochs < 1:
        raise UserError(f"train.epochs={config.train.epochs}: need at least one epoch")


def to_yaml(config: SuiteConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def out_dir(config: SuiteConfig) -> Path:
    return Path(config.out) if config.out else Path("runs") / config.suite


def _dotlist_to_dict(overrides: list[str]) -> dict[str, Any]:
    """Parse `key=value` overrides, routing `METHOD.option=value` to `options.METHOD.option`."""
    methods = set(list_methods())
    fields = set(OmegaConf.structured(SuiteConfig).keys())
    parsed = OmegaConf.create({})
    for item in overrides:
        head = item.split(".", 1)[0].split("=", 1)[0]
        routed = f"options.{item}" if head in methods and head not in fields else item
        try:
            parsed = OmegaConf.merge(parsed, OmegaConf.from_dotlist([routed]))
        except (OmegaConfBaseException, yaml.YAMLError) as error:
            raise UserError(f"malformed override {item!r}: {_first_line(error)}") from None
    return OmegaConf.to_container(parsed)


def _create(data: dict, origin: str) -> DictConfig:
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as error:
        raise UserError(f"bad {origin}: {_first_line(error)}") from None


def _unknown_key_message(error: ConfigKeyError, schema: DictConfig) -> str:
    key = getattr(error, "full_key", None) or getattr(error, "key", "?")
    parent, _, leaf = str(key).rpartition(".")
    node = OmegaConf.select(schema, parent) if parent else schema
    valid = list(node.keys()) if isinstance(node, DictConfig) else []
    hint = "; a method option is METHOD.option=value" if not parent else ""
    return f"unknown key {key!r}; valid keys{' of ' + parent if parent else ''}: {', '.join(valid)}{hint}"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
