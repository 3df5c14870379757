"""The typed configuration of a suite run, and the `key=value` overrides applied to it.

Every knob is a dataclass field with a default and a comment, grouped by concern; OmegaConf
checks types and unknown keys against these dataclasses, so the YAML suites, the CLI
overrides and the recorded trial configs are all one schema. An override whose first part is
a method's name sets that method's option (`px.rounds=50` -> `options.px.rounds`); one whose
first part is a variant's name sets that variant's (`px-uniform.rounds=50` ->
`variants.px-uniform.rounds`, see `pai_bench.variants`).
"""

from __future__ import annotations

import dataclasses
import math
import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pai_bench.bundled import bundled_folder
from pai_bench.errors import UserError, unknown_choice
from pai_bench.method import TrajectoryMethod
from pai_bench.plugins import create_method, list_methods, method_class, resolve_options
from pai_bench.variants import Row, suite_rows

EXECUTORS = ("tune", "local")
#: What `train.device` accepts: what torch.device parses and pai-bench can train on.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


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
    rrc_scale: Optional[list[float]] = None  # rrc-flip's range of crop area fractions; null: [0.1, 1.0]
    rrc_ratio: Optional[list[float]] = None  # rrc-flip's range of aspect ratios; null: torchvision's [0.75, 1.333]
    prune_per_class: int = 10  # pruning split: examples per class, drawn once per seed


@dataclass
class TrainConfig:
    epochs: int = 160  # 0: prune only (measure the masks at initialisation, train nothing)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [80, 120])  # epochs where lr *= gamma
    gamma: float = 0.1
    eval_batch_size: int = 1000  # does not change results
    device: str = "auto"  # auto | cpu | cuda | cuda:N; does not change the trial key
    fast: bool = True  # on a GPU: bf16, channels_last, compiled CUDA-graph steps (pai_bench.engine); false: the plain fp32 loop


@dataclass
class PruneConfig:
    exclude: list[str] = field(default_factory=list)  # glob patterns of weights kept dense, e.g. fc.weight
    # Examples per pruning batch; None: the whole pruning split in one batch (PX, Synaptic-Flow).
    # In the key: under train-mode BatchNorm (GraSP, iter-snip, PX authors) it changes the masks.
    batch_size: Optional[int] = None


@dataclass
class DiagnosticsConfig:
    """Measurements added to each trial; they do not change its result (nor the trial key)."""

    ntk: bool = False  # empirical NTK trace and top eigenvalues at init, pruned vs dense (pai_bench.diagnostics)
    ntk_examples: int = 8  # pruning-split examples the NTK is measured on; memory ~ examples x classes x weights
    # The mask again with the scores in the other precision (float32 <-> float64) and with the
    # pruning split in another order, at the sparsities of masks_at (it prunes three times); the
    # record keeps the Jaccard index of each with the mask (pai_bench.rounding).
    rounding: bool = False
    # Prune-only trials (train.epochs=0) at these sparsities keep their mask in the record, for
    # the methods' mask similarity; null: at every sparsity, []: never (pai_bench.maskbits).
    masks_at: Optional[list[float]] = None


#: The sections a cell of a suite may override.
CELL_SECTIONS = ("model", "data", "train", "prune", "diagnostics")


@dataclass
class CellConfig:
    """One model/dataset/protocol of a suite (e.g. transfer's CIFAR-10 fine-tuning).

    In a suite file a cell lists only what differs from the suite's own sections; once loaded,
    every field is resolved, in the order suite < cell < command line < command-line cell
    (`train.epochs=2` cuts every cell down, `cells.cifar10.train.epochs=3` one of them).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


@dataclass
class ResourcesConfig:
    """What one trial asks of the Ray cluster; it does not change results (nor the trial key)."""

    cpu: float = 1.0  # CPU cores per trial; Ray sets the trial's torch threads (OMP_NUM_THREADS) to it
    gpu: float = 1.0  # GPUs per trial: 0.25 packs four trials on a GPU; treated as 0 where the cluster has none


@dataclass
class RayConfig:
    """Where and how the `tune` executor runs."""

    address: Optional[str] = None  # auto: join the cluster `ray start` runs here; HOST:PORT: that one; unset: start Ray here
    storage: Optional[str] = None  # trial checkpoints (Tune's storage); default <out>/ray; shared (NFS, s3://) on several nodes
    max_failures: int = 2  # retries of a trial whose process died (node lost, killed), from its last checkpoint
    max_concurrent: int = 0  # trials at once at most; 0: as many as the resources allow


@dataclass
class CutConfig:
    """Part of a suite's grid left out to fit a budget, said on its pages: `rows` (all when
    empty) in `cells` (all when empty) run only at `sparsities` (all when empty) and with the
    first `seeds` seeds (all when 0). Cut trials are not part of the grid: the reports count
    them neither as run nor as missing."""

    rows: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    sparsities: list[float] = field(default_factory=list)
    seeds: int = 0
    why: str = ""  # the reason, for the pages (e.g. "PX's 100 rounds on VGG-16-BN: 10 min a trial")


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
    # Rows of their own for a method with other options, listed in `methods` by name:
    # {px-uniform: {method: px, variant: uniform}}; a variant's options win over options.<method>.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sanity checks (shuffle | reinit | invert): one more trial per mask method, sparsity and seed.
    ablations: list[str] = field(default_factory=list)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    # name -> overrides of model/data/train/prune; the grid is cell x method x sparsity x seed.
    # Empty: the suite is its own single cell. `cells=[a,b]` on the command line runs only those.
    cells: dict[str, CellConfig] = field(default_factory=dict)
    cuts: list[CutConfig] = field(default_factory=list)  # parts of the grid left out to fit a budget
    executor: str = "tune"  # tune (Ray Tune: parallel, clusters, retries) | local (in process, one trial at a time)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)  # per trial, for executor=tune
    ray: RayConfig = field(default_factory=RayConfig)
    checkpoint_every: int = 10  # epochs between trial checkpoints, to resume a killed run mid-trial; 0: none
    out: Optional[str] = None  # results folder; default runs/<suite>


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
