"""Loading a suite: its YAML file, the `key=value` overrides applied to it, its variants, and
its validation against the method registry, into the schema's `SuiteConfig` (`pai_bench.schema`).

OmegaConf checks types and unknown keys against the schema's dataclasses, so the YAML suites,
the CLI overrides and the recorded trial configs are all one schema. An override whose first
part is a method's name sets that method's option (`px.rounds=50` -> `options.px.rounds`); one
whose first part is a variant's name sets that variant's (`px-uniform.rounds=50` ->
`variants.px-uniform.rounds`, see `pai_bench.variants`).

The schema's classes are importable from here too (`from pai_bench.config import
TrainConfig`), as they were before the schema had a module of its own; modules below the
suite loader (engine, training, pruning) import them from `pai_bench.schema`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pai_bench.bundled import bundled_folder
from pai_bench.errors import UserError, unknown_choice
from pai_bench.method import TrajectoryMethod
from pai_bench.plugins import create_method, list_methods, method_class, resolve_options
from pai_bench.schema import (
    CELL_SECTIONS,
    DEVICE_PATTERN,
    EXECUTORS,
    CellConfig,
    CutConfig,
    DataConfig,
    DiagnosticsConfig,
    ModelConfig,
    PruneConfig,
    RayConfig,
    ResourcesConfig,
    SuiteConfig,
    TrainConfig,
)
from pai_bench.variants import Row, suite_rows

__all__ = [
    "CELL_SECTIONS",
    "DEVICE_PATTERN",
    "EXECUTORS",
    "CellConfig",
    "CutConfig",
    "DataConfig",
    "DiagnosticsConfig",
    "ModelConfig",
    "PruneConfig",
    "RayConfig",
    "ResourcesConfig",
    "SuiteConfig",
    "TrainConfig",
    "list_suites",
    "load_config",
    "out_dir",
    "parse_overrides",
    "read_suite_file",
    "suite_path",
    "suites_folder",
    "to_yaml",
    "validate",
]


def suites_folder() -> Path:
    return bundled_folder("suites")


def list_suites() -> list[str]:
    return sorted(path.stem for path in suites_folder().glob("*.yaml"))


def suite_path(name: str) -> Path:
    """A built-in suite by name, or a YAML file by path."""
    path = suites_folder() / f"{name}.yaml"
    if name in list_suites():
        return path
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        raise UserError(f"suite={name} is a folder; pass a suite YAML file or a built-in suite ({', '.join(list_suites())})")
    looks_like_path = candidate.suffix in (".yaml", ".yml") or "/" in name or "\\" in name
    if candidate.is_file() and looks_like_path:
        return candidate
    if looks_like_path:
        raise UserError(f"suite file {name} does not exist; pass a suite YAML file or a built-in suite ({', '.join(list_suites())})")
    raise unknown_choice("suite", name, list_suites())


def read_suite_file(path: Path) -> dict[str, Any]:
    """The mapping a suite file holds; a file that is not one is bad input, said in one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"suite file {path} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise UserError(f"cannot read suite file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or _first_line(error)
        raise UserError(f"suite file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        raise UserError(f"suite file {path} is empty; a suite sets at least its methods, e.g. methods: [dense, snip]")
    if not isinstance(data, dict):
        raise UserError(f"suite file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


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
        data = read_suite_file(path)
        data.setdefault("suite", path.stem)
        layers.append(_create(data, f"suite {path}"))
    else:
        data = {}
    selection, rest = _cell_selection(list(overrides))
    command_line = _dotlist_to_dict(rest, _variant_names(data, rest))
    layers.append(_create(command_line, "overrides"))
    config: SuiteConfig = OmegaConf.to_object(_merge(layers, schema))
    _check_cut_cells(config.cuts, list(config.cells))
    config.cells = _resolve_cells(list(config.cells), selection, [data, command_line])
    config.cuts = _cuts_of(config.cuts, list(config.cells))
    validate(config)
    return config


def _merge(layers: list[DictConfig], schema: DictConfig) -> DictConfig:
    try:
        return OmegaConf.merge(*layers)
    except ConfigKeyError as error:
        raise UserError(_unknown_key_message(error, schema)) from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        if key and "is not a ListConfig" in str(error):
            value = getattr(error, "value", None)
            raise UserError(f"{key}={value}: a list is expected, e.g. {key}=[{value}]") from None
        raise UserError(f"bad config value{f' for {key}' if key else ''}: {_first_line(error)}") from None


def _cell_selection(overrides: list[str]) -> tuple[list[str] | None, list[str]]:
    """Split `cells=[a,b]` (or `cells=a`), which picks cells to run, from the other overrides.

    `cells.NAME.section.field=value` is an ordinary override of one cell and stays.
    """
    selection, rest = None, []
    for item in overrides:
        key, _, value = item.partition("=")
        parsed = OmegaConf.to_container(_parse_override(item)).get("cells") if key == "cells" else None
        if isinstance(parsed, str):
            parsed = [parsed]
        if not isinstance(parsed, list):
            rest.append(item)
            continue
        if not parsed:
            raise UserError(f"{item!r} selects no cell; name at least one, e.g. cells=[{value.strip('[]') or 'NAME'}]")
        selection = [str(name) for name in parsed]
    return selection, rest


def _resolve_cells(names: list[str], selection: list[str] | None, sources: list[dict]) -> dict[str, CellConfig]:
    """Every selected cell with all its fields: suite < suite's cell < overrides < overrides' cell."""
    if selection is not None:
        if not names:
            raise UserError(f"cells=[{','.join(selection)}]: this suite has no cells (it runs as one); drop cells=")
        for name in selection:
            if name not in names:
                raise unknown_choice("cell", name, names)
        names = [name for name in names if name in selection]
    schema = OmegaConf.structured(CellConfig)
    resolved = {}
    for name in names:
        layers: list[DictConfig] = [schema]
        for source in sources:
            sections = {key: source[key] for key in CELL_SECTIONS if source.get(key) is not None}
            cell = (source.get("cells") or {}).get(name) or {}
            layers += [_create(sections, f"cell {name}"), _create(cell, f"cell {name}")]
        resolved[name] = OmegaConf.to_object(_merge(layers, schema))
    return resolved


def validate(config: SuiteConfig) -> None:
    """Checks OmegaConf's types cannot express: names that must be registered, ranges."""
    methods = list_methods()
    if not config.methods:
        raise UserError("methods is empty; name at least one method")
    for name, options in config.options.items():
        if name not in methods:
            raise unknown_choice("method (in options)", name, methods)
        if not isinstance(options, dict):
            raise UserError(f"options.{name} must be a mapping of option=value, got {options!r}")
        resolve_options(name, options)
    rows = suite_rows(config)
    for sparsity in config.sparsities:
        if not 0.0 <= sparsity < 1.0:
            raise UserError(f"sparsity {sparsity} is outside [0, 1): it is the fraction of weights removed")
    if config.seeds < 1:
        raise UserError(f"seeds={config.seeds}: need at least one seed")
    _validate_ablations(config, rows)
    _validate_cuts(config, rows)
    if config.executor not in EXECUTORS:
        raise unknown_choice("executor", config.executor, EXECUTORS)
    _validate_execution(config)
    # What runs is the cells, or the suite's own sections when it has none.
    trajectories = [row for row in rows.values() if issubclass(method_class(row.method), TrajectoryMethod)]
    for name, cell in (config.cells or {None: config}).items():
        try:
            _validate_cell(cell)
            _validate_trajectories(trajectories, cell.train.epochs)
        except UserError as error:
            raise UserError(f"cell {name!r}: {error}" if name is not None else str(error)) from None


def _validate_trajectories(rows: list[Row], epochs: int) -> None:
    """Rows that train between pruning levels (imp) need epochs to train, past their rewind point."""
    for row in rows:
        if epochs == 0:
            raise UserError(f"{row.name} trains between its pruning levels, so train.epochs=0 (prune only) cannot run it; drop {row.name} from methods, or train")
        rewind = create_method(row.method, row.options).rewind_epoch()
        if rewind >= epochs:
            raise UserError(f"{row.name} rewinds to epoch {rewind}, not before the last epoch (train.epochs={epochs}); rewind to init or an earlier epoch")


def _validate_ablations(config: SuiteConfig, rows: dict[str, Row]) -> None:
    from pai_bench.ablations import applies_to, check_ablation

    for name in config.ablations:
        check_ablation(name)
        if not any(applies_to(row.method, name) for row in rows.values()):
            raise UserError(
                f"ablation {name!r} applies to none of methods={list(config.methods)}: ablations need a method that "
                "scores weights (e.g. snip, synflow), not dense or scratch-e/b, and imp takes shuffle and reinit only"
            )


def _check_cut_cells(cuts: list[CutConfig], cells: list[str]) -> None:
    """Against every cell of the suite, before `cells=[...]` selects some (a cut may name the others)."""
    for index, cut in enumerate(cuts):
        for name in cut.cells:
            if name not in cells:
                raise unknown_choice(f"cell (in cuts[{index}].cells)", name, cells or ["(this suite has no cells)"])


def _cuts_of(cuts: list[CutConfig], cells: list[str]) -> list[CutConfig]:
    """The cuts as they apply to the selected cells (a cut of cells not run here is dropped,
    so the config a run writes names only its own cells)."""
    kept = []
    for cut in cuts:
        if not cut.cells:
            kept.append(cut)
        elif any(cell in cells for cell in cut.cells):
            kept.append(dataclasses.replace(cut, cells=[cell for cell in cut.cells if cell in cells]))
    return kept


def _validate_cuts(config: SuiteConfig, rows: dict[str, Row]) -> None:
    for index, cut in enumerate(config.cuts):
        for name in cut.rows:  # any method or variant: `methods=[...]` may leave the cut's rows out of this run
            if name not in rows and name not in config.variants and name not in list_methods():
                raise unknown_choice(f"row (in cuts[{index}].rows)", name, [*rows, *config.variants])
        for sparsity in cut.sparsities:  # `sparsities=[...]` may leave the cut's out of this run
            if not 0.0 < sparsity < 1.0:
                raise UserError(f"cuts[{index}].sparsities has {sparsity}, outside (0, 1): the sparsities the cut rows keep")
        if cut.seeds < 0:
            raise UserError(f"cuts[{index}].seeds={cut.seeds}: need 0 (every seed) or the number of seeds the cut rows keep")


def _validate_cell(cell: CellConfig | SuiteConfig) -> None:
    from pai_bench.data import list_datasets
    from pai_bench.models import list_models
    from pai_bench.models.torchvision_resnet import check_weights

    if cell.model.name not in list_models():
        raise unknown_choice("model", cell.model.name, list_models())
    if cell.model.weights is not None:
        check_weights(cell.model.name, cell.model.weights)
    if cell.data.name not in list_datasets():
        raise unknown_choice("dataset", cell.data.name, list_datasets())
    if cell.train.epochs < 0:
        raise UserError(f"train.epochs={cell.train.epochs}: need 0 (prune only, no training) or more epochs")
    if cell.diagnostics.ntk_examples < 1:
        raise UserError(f"diagnostics.ntk_examples={cell.diagnostics.ntk_examples}: need at least one example")
    for sparsity in cell.diagnostics.masks_at or []:
        if not 0.0 <= sparsity < 1.0:
            raise UserError(f"diagnostics.masks_at holds {sparsity}: a sparsity must be in [0, 1)")
    _validate_train(cell.train)
    _validate_data(cell.data)
    _validate_range("data.rrc_scale", cell.data.rrc_scale, upper=1.0)
    _validate_range("data.rrc_ratio", cell.data.rrc_ratio)
    if cell.prune.batch_size is not None and cell.prune.batch_size < 1:
        raise UserError(f"prune.batch_size={cell.prune.batch_size}: must be positive, or null for the whole pruning split")


def _validate_train(train: TrainConfig) -> None:
    """Values with which no trial could train: rejected once, before any trial fails on them."""
    _require("train.lr", train.lr, train.lr >= 0, "a learning rate of 0 or more, e.g. train.lr=0.1 (0 keeps the initial weights)")
    _require("train.momentum", train.momentum, 0 <= train.momentum < 1, "a momentum in [0, 1), e.g. 0.9")
    _require("train.weight_decay", train.weight_decay, train.weight_decay >= 0, "0 or a positive weight decay, e.g. 1e-4")
    _require("train.gamma", train.gamma, train.gamma > 0, "a positive learning-rate factor, e.g. 0.1")
    _require("train.batch_size", train.batch_size, train.batch_size >= 1, "a positive number of examples, e.g. 128")
    _require("train.eval_batch_size", train.eval_batch_size, train.eval_batch_size >= 1, "a positive number of examples, e.g. 1000")
    if train.nesterov and train.momentum == 0:
        raise UserError("train.nesterov=true needs a momentum above 0 (SGD's Nesterov update is its momentum's)")
    for milestone in train.milestones:
        if milestone < 0:
            raise UserError(f"train.milestones={list(train.milestones)}: an epoch cannot be negative")
    if not DEVICE_PATTERN.fullmatch(train.device):
        raise UserError(f"train.device={train.device!r} is not a device; valid choices: auto, cpu, cuda, cuda:N (N a GPU index), mps")


def _validate_data(data: DataConfig) -> None:
    from pai_bench.data import AUGMENTATIONS

    if data.augment not in AUGMENTATIONS:
        raise unknown_choice("data.augment", data.augment, AUGMENTATIONS)
    for name in ("subset", "image_size", "input_size"):
        value = getattr(data, name)
        if value is not None and value < 1:
            raise UserError(f"data.{name}={value}: must be a positive number, or null for none")
    if data.prune_per_class < 1:
        raise UserError(f"data.prune_per_class={data.prune_per_class}: the pruning split needs at least one example per class")
    if data.padding < 0:
        raise UserError(f"data.padding={data.padding}: crop padding cannot be negative")


def _require(name: str, value: float, valid: bool, expected: str) -> None:
    """`valid` is the range check; non-finite values (nan, inf) fail it whatever it says."""
    if not (valid and math.isfinite(value)):
        raise UserError(f"{name}={value}: expected {expected}")


def _validate_range(name: str, bounds: list[float] | None, upper: float = math.inf) -> None:
    if bounds is None:
        return
    if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1] <= upper:
        limit = f" <= {upper:g}" if math.isfinite(upper) else ""
        raise UserError(f"{name}={list(bounds)}: must be [low, high] with 0 < low <= high{limit}, or null for the default")


def _validate_execution(config: SuiteConfig) -> None:
    cpu, gpu = config.resources.cpu, config.resources.gpu
    if not cpu > 0:
        raise UserError(f"resources.cpu={cpu}: a trial needs a positive number of CPU cores, e.g. resources.cpu=1")
    if not gpu >= 0:
        raise UserError(f"resources.gpu={gpu}: must be 0 (CPU only), a fraction of a GPU (0.25) or a whole number of GPUs")
    if gpu > 1 and gpu != int(gpu):
        raise UserError(f"resources.gpu={gpu}: above 1, Ray takes whole GPUs only (e.g. 2)")
    if config.ray.max_failures < 0:
        raise UserError(f"ray.max_failures={config.ray.max_failures}: must be 0 or more")
    if config.ray.max_concurrent < 0:
        raise UserError(f"ray.max_concurrent={config.ray.max_concurrent}: must be 0 (no limit) or more")
    if config.checkpoint_every < 0:
        raise UserError(f"checkpoint_every={config.checkpoint_every}: must be 0 (no checkpoints) or a number of epochs")


def to_yaml(config: SuiteConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def out_dir(config: SuiteConfig) -> Path:
    return Path(config.out) if config.out else Path("runs") / config.suite


def _variant_names(suite: dict, overrides: list[str]) -> set[str]:
    """The variants the suite file and the `variants.NAME...` overrides define."""
    defined = suite.get("variants")
    names = set(defined) if isinstance(defined, dict) else set()
    for item in overrides:
        parts = item.partition("=")[0].split(".")
        if parts[0] == "variants" and len(parts) > 1:
            names.add(parts[1])
    return names


def _dotlist_to_dict(overrides: list[str], variants: set[str] = frozenset()) -> dict[str, Any]:
    """Parse `key=value` overrides, routing `METHOD.option=value` to `options.METHOD.option`
    and `VARIANT.option=value` to `variants.VARIANT.option`."""
    methods = set(list_methods())
    fields = set(OmegaConf.structured(SuiteConfig).keys())
    parsed = OmegaConf.create({})
    for item in overrides:
        head = item.split(".", 1)[0].split("=", 1)[0]
        routed = item
        if head in methods and head not in fields:
            routed = f"options.{item}"
        elif head in variants and head not in fields:
            routed = f"variants.{item}"
        try:
            parsed = OmegaConf.merge(parsed, _parse_override(routed, item))
        except OmegaConfBaseException as error:
            raise UserError(f"malformed override {item!r}: {_first_line(error)}") from None
    return OmegaConf.to_container(parsed)


def _parse_override(routed: str, item: str | None = None) -> DictConfig:
    try:
        return OmegaConf.from_dotlist([routed])
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise UserError(f"malformed override {item or routed!r}: {_first_line(error)}") from None


def _create(data: dict, origin: str) -> DictConfig:
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as error:
        raise UserError(f"bad {origin}: {_first_line(error)}") from None


def _unknown_key_message(error: ConfigKeyError, schema: DictConfig) -> str:
    key = getattr(error, "full_key", None) or getattr(error, "key", "?")
    parent, _, leaf = str(key).rpartition(".")
    node = OmegaConf.select(schema, parent) if parent else schema
    if parent.startswith("cells."):  # cells.NAME[.section]: the keys of a cell
        inner = parent.split(".", 2)[2:]
        cell = OmegaConf.structured(CellConfig)
        node = OmegaConf.select(cell, inner[0]) if inner else cell
    valid = list(node.keys()) if isinstance(node, DictConfig) else []
    hint = "; a method option is METHOD.option=value" if not parent else ""
    return f"unknown key {key!r}; valid keys{' of ' + parent if parent else ''}: {', '.join(valid)}{hint}"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
