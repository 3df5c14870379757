"""A trial's description (`TrialSpec`), its key, and the fields every record of it starts with.

A trial is a pure function of its spec: method and options, sparsity, seed, model, data,
training and pruning settings. Its key is a hash of every field that determines the result
(and pai-bench's version), so a rerun finds finished work and a changed protocol never reuses a
stale record; fields that only change where or how fast it runs, or labels, stay out of it.
Like OpenLTH's hashed run descriptions, the spec sits at the bottom: the grid builds specs,
the unit of work runs them, the runner stores their records by key, and the pages read them.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
import torchvision

from pai_bench.machine import describe_machine
from pai_bench.schema import DataConfig, DiagnosticsConfig, ModelConfig, PruneConfig, TrainConfig
from pai_bench.version import __version__

#: Fields that change where or how fast a trial runs, not what it computes.
NOT_IN_KEY = {
    ("data", "root"),
    ("data", "download"),
    ("train", "device"),
    ("train", "eval_batch_size"),
    # the engine, like the device, changes the arithmetic (bf16, fused kernels), not the
    # protocol; its accuracy is checked against the fp32 loop, and each record says which ran
    ("train", "fast"),
}
#: Fields added after trials were first keyed: hashed only when set (not None), so the trials
#: that do not use them keep their keys, and their finished records.
KEY_ONLY_WHEN_SET = {("ablation",), ("levels",), ("prune", "batch_size"), ("data", "rrc_scale"), ("data", "rrc_ratio")}


@dataclass(frozen=True)
class TrialSpec:
    method: str
    sparsity: float
    seed: int
    options: dict[str, Any]
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    prune: PruneConfig = field(default_factory=PruneConfig)
    suite: str = "custom"
    cell: str | None = None  # the suite's cell (None: a suite without cells); not in the key
    ablation: str | None = None  # shuffle | reinit | invert (pai_bench.ablations); None: the method as it is
    # A trajectory method's (imp's) level densities up to this sparsity (pai_bench.levels): in
    # the key, since the levels a mask went through change it. None for every other method.
    levels: list[float] | None = None
    # Measurements beside the result (NTK at init): not in the key, since they change nothing
    # the trial computes; a finished trial rerun with them turned on is not run again.
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    # The suite's row this trial belongs to: `method` itself, or a variant's name
    # (pai_bench.variants). A label, not in the key: renaming a variant reruns nothing.
    row: str | None = None

    @property
    def row_name(self) -> str:
        return self.row or self.method

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        """How progress lines name the trial: row (and ablation), sparsity, seed, cell."""
        method = f"{self.row_name} ({self.ablation})" if self.ablation else self.row_name
        cell = f", {self.cell}" if self.cell else ""
        return f"{method}, s={self.sparsity:g}, seed={self.seed}{cell}"

    @property
    def key(self) -> str:
        """A short hash of everything that determines the trial's result."""
        content = self.as_dict()
        content.pop("suite")
        content.pop("cell")  # its model/data/train are in the key; its name is only a label
        content.pop("row")  # the method and options are in the key; the row's name is a label
        content.pop("diagnostics")
        for section, name in NOT_IN_KEY:
            content[section].pop(name)
        for *sections, name in KEY_ONLY_WHEN_SET:
            where = content
            for section in sections:
                where = where[section]
            if where.get(name) is None:
                where.pop(name, None)
        content["pai_bench"] = __version__
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(
            method=data["method"],
            sparsity=float(data["sparsity"]),
            seed=int(data["seed"]),
            options=dict(data["options"]),
            model=ModelConfig(**data["model"]),
            data=DataConfig(**data["data"]),
            train=TrainConfig(**data["train"]),
            prune=PruneConfig(**data.get("prune", {})),
            suite=data.get("suite", "custom"),
            cell=data.get("cell"),
            ablation=data.get("ablation"),
            levels=data.get("levels"),
            diagnostics=DiagnosticsConfig(**data.get("diagnostics", {})),
            row=data.get("row"),
        )


def versions() -> dict[str, str]:
    return {
        "pai_bench": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def base_record(spec: TrialSpec, status: str) -> dict[str, Any]:
    return {
        "key": spec.key,
        "status": status,
        "suite": spec.suite,
        "cell": spec.cell,
        "method": spec.method,  # the registered method that ran; its options are the record's `options`
        "row": spec.row_name,  # the suite's row: the method, or a variant of it by name
        "ablation": spec.ablation,
        "sparsity": spec.sparsity,
        "seed": spec.seed,
        "model": spec.model.name,
        "dataset": spec.data.name,
        "config": spec.as_dict(),
        "versions": versions(),
        "machine": describe_machine(),
        "started_at": now(),
    }




def now() -> str:
    """A record's timestamp: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
