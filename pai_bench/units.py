"""The units of work of a grid: each trial alone, a trajectory method's (imp's) plain trials
grouped into one trajectory per seed and cell.

What the executors schedule and what `pai-bench show` costs; running a unit is
`pai_bench.trial.run_trial` or `pai_bench.trajectory.run_trajectory`. This module only
describes them (from the specs and the method registry), so the grid, the runner and the
pages can read it without the code that trains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pai_bench.method import TrajectoryMethod
from pai_bench.plugins import create_method, method_class
from pai_bench.spec import TrialSpec


def is_trajectory_method(method: str) -> bool:
    return issubclass(method_class(method), TrajectoryMethod)


def level_paths(method: str, options: Mapping[str, Any], sparsities: Iterable[float]) -> dict[float, list[float]]:
    """For each sparsity, the densities of the levels the method's mask goes through."""
    instance = create_method(method, options)
    if not isinstance(instance, TrajectoryMethod):
        raise TypeError(f"{method} is not a trajectory method")
    return instance.plan([float(s) for s in sparsities])


@dataclass(frozen=True)
class Trajectory:
    """The plain trials of one trajectory method, seed and cell, by increasing sparsity: what
    one trajectory yields. Its key hashes its members' keys: the same grid finds the same
    checkpoint, a changed one starts afresh."""

    members: tuple[TrialSpec, ...]

    @property
    def key(self) -> str:
        return hashlib.sha256(",".join(spec.key for spec in self.members).encode()).hexdigest()[:16]

    @property
    def base(self) -> TrialSpec:
        return self.members[0]

    @property
    def label(self) -> str:
        cell = f", {self.base.cell}" if self.base.cell else ""
        sparsities = ", ".join(f"{spec.sparsity:g}" for spec in self.members)
        return f"{self.base.method} trajectory (s={sparsities}), seed={self.base.seed}{cell}"

    @property
    def epochs(self) -> int:
        """The training epochs the whole trajectory costs: level 0 whole, each later level
        from the rewind point to the end."""
        return trajectory_epochs(self.base, len(self.members[-1].levels or []))


def trajectory_epochs(spec: TrialSpec, levels: int) -> int:
    """Epochs trained by a trajectory of `levels` levels after level 0 (level 0 included)."""
    rewind = trajectory_method(spec).rewind_epoch()
    return spec.train.epochs + levels * (spec.train.epochs - rewind)


def cost_lines(specs: Sequence[TrialSpec]) -> list[str]:
    """What each trajectory method of a grid will train, for `pai-bench show` to say before a
    run: a trajectory costs its levels' epochs, where a trial of any other method costs one
    protocol."""
    trajectories: dict[str, list[Trajectory]] = {}
    for unit in work_units(specs):
        if isinstance(unit, Trajectory):
            trajectories.setdefault(unit.base.method, []).append(unit)
    lines = []
    for method, units in trajectories.items():
        longest = max(units, key=lambda unit: unit.epochs)
        levels = len(longest.members[-1].levels or []) + 1
        lines.append(
            f"# {method}: one trajectory per seed and cell: {levels} trained levels (to {100 * longest.members[-1].sparsity:g} % "
            f"sparsity), {longest.epochs} epochs of training each (a trial of another method trains {longest.base.train.epochs}); "
            f"{len(units)} {'trajectory' if len(units) == 1 else 'trajectories'}, {sum(unit.epochs for unit in units)} epochs in all"
        )
    return lines


def work_units(specs: Sequence[TrialSpec]) -> list[TrialSpec | Trajectory]:
    """`specs` as units of work: each trial alone, the plain trials of a trajectory method
    grouped into their trajectory (placed where its first member was)."""
    groups: dict[str, list[TrialSpec]] = {}
    for spec in specs:
        if _in_trajectory(spec):
            groups.setdefault(_trajectory_group(spec), []).append(spec)
    units: list[TrialSpec | Trajectory] = []
    placed: set[str] = set()
    for spec in specs:
        if not _in_trajectory(spec):
            units.append(spec)
        elif (group := _trajectory_group(spec)) not in placed:
            placed.add(group)
            units.append(Trajectory(tuple(sorted(groups[group], key=lambda member: member.sparsity))))
    return units


def _in_trajectory(spec: TrialSpec) -> bool:
    return spec.ablation is None and is_trajectory_method(spec.method)


def _trajectory_group(spec: TrialSpec) -> str:
    """What a trajectory's members share: everything but the sparsity and its levels."""
    return replace(spec, sparsity=0.0, levels=None).key


def member_specs(unit: TrialSpec | Trajectory) -> tuple[TrialSpec, ...]:
    return unit.members if isinstance(unit, Trajectory) else (unit,)


def needs_reached_masks(unit: TrialSpec | Trajectory) -> bool:
    """Whether `unit` is an ablated trial of a trajectory method: it starts from the masks the
    trajectory reached (`reached_masks_key`), so it runs after the trajectories."""
    return isinstance(unit, TrialSpec) and unit.ablation is not None and is_trajectory_method(unit.method)


def reached_masks_key(spec: TrialSpec) -> str:
    """The key the masks an ablated trial of a trajectory method starts from are kept under:
    that of the trajectory's record at its sparsity."""
    return replace(spec, ablation=None).key


def trajectory_method(spec: TrialSpec) -> TrajectoryMethod:
    method = create_method(spec.method, spec.options)
    if not isinstance(method, TrajectoryMethod):
        raise TypeError(f"{spec.method} is not a trajectory method")
    return method
