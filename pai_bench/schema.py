"""The schema: the typed configuration of a suite and of each trial, as dataclasses.

Every knob is a dataclass field with a default and a comment, grouped by concern (model, data,
training, pruning, diagnostics, execution). OmegaConf checks the YAML suites, the command
line's overrides and the recorded trial configs against these dataclasses (`pai_bench.config`
loads and validates a suite into them), so all three are one schema.

The bottom of pai-bench: every layer reads these classes, so this module imports nothing of
pai-bench (see docs/architecture.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

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
