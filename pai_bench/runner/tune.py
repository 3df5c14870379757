"""The Ray Tune executor: trials in parallel, packed on GPUs, across nodes, resumable.

It knows nothing about pruning, and a trial knows nothing about Ray: this module is the glue.

- Each unfinished trial is one Tune trial; the param space is a grid over them (the suite's
  method x sparsity x seed x cell grid, less the finished trials), each asking for
  `resources.cpu` cores and `resources.gpu` GPUs (a fraction packs trials on one GPU).
- In a Tune worker, `run_trial` runs with two hooks: its per-epoch metrics go to
  `tune.report`, and every `checkpoint_every` epochs its state rides along as a
  `tune.Checkpoint`, which Tune copies to its storage (`ray.storage`, default `<out>/ray`).
  The datasets are loaded by the driver, one at a time, and shared through Ray's object
  store, so only the driver needs the files.
- The driver alone writes the results store, the single source of truth: a `running` record
  when a trial starts, the same record naming the trial's latest checkpoint after each one,
  and the final record that the trial's last report carries. Each write is atomic and a
  trial's record has one file, so a killed driver loses or duplicates nothing.
- Resume: every invocation is a fresh Tune experiment over the trials not `done` or
  `diverged`; a `running` (or `failed`) record's checkpoint is where its trial resumes. A worker
  that dies (node lost, process killed) is retried by Tune from its last checkpoint, up to
  `ray.max_failures` times, then recorded as failed; an exception inside a trial is recorded
  as failed at once, since running it again would only fail again.
- A trajectory method's (imp's) trials of one seed and cell are one Tune trial, their
  trajectory (`pai_bench.trajectory`): it reports each member's record as it reaches that
  sparsity, and the driver writes it then; its checkpoints ride along as a trial's do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from tqdm import tqdm

from pai_bench.data import Dataset
from pai_bench.errors import UserError
from pai_bench.runner.checkpoints import STATE_FILE, read_checkpoint, read_state, resume_point
from pai_bench.runner.shared_data import share, unshare
from pai_bench.schema import RayConfig, ResourcesConfig
from pai_bench.spec import TrialSpec, base_record
from pai_bench.store import ResultStore, masks_from_bytes, masks_to_bytes
from pai_bench.trajectory import run_trajectory
from pai_bench.trial import run_trial
from pai_bench.units import Trajectory, member_specs, needs_reached_masks, reached_masks_key, work_units
from pai_bench.work import data_key

#: The metric of a trial's last report that carries its record (as JSON) to the driver.
RECORD = "pai_bench_record"
#: The metric that carries the masks a trajectory reached (for its ablated trials), beside its record.
MASKS = "pai_bench_masks"

#: Tune's console output gives way to one progress line: the legacy output engine at verbose=0
#: prints nothing (the new one always prints its banner); forced experiment snapshots (due to
#: `num_to_keep`) are cheap next to a trial's epochs; Ctrl-C stops the run at once, as with
#: the local executor (Tune's own handler would advise `Tuner.restore`, which is not how a
#: pai-bench run resumes: rerunning the command is).
QUIET_TUNE = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


def run_tune(
    specs: Sequence[TrialSpec],
    store: ResultStore,
    datasets: Mapping[tuple, Dataset],
    resources: ResourcesConfig,
    ray_config: RayConfig,
    checkpoint_every: int = 0,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> Counter:
    """Run the unfinished trials of `specs` through Ray Tune; return how many ended in each
    status (`unfinished`: trials the run left running, if it ended early).

    Uses the Ray session this process already has, else joins the cluster at
    `ray_config.address`, else starts Ray on this machine for the run. `callbacks` are extra
    `ray.tune.Callback`s.
    """
    todo = store.unfinished(specs)
    counts: Counter = +Counter(skipped=len(specs) - len(todo))  # unary + drops a zero count
    storage = _storage(ray_config.storage, store.root)
    # A trajectory method's trials of a seed and cell are one Tune trial: their trajectory.
    unfinished = {spec.key for spec in todo}
    all_units = work_units(specs)
    units = [unit for unit in all_units if any(spec.key in unfinished for spec in member_specs(unit))]
    if todo:
        with ray_session(ray_config.address) as joined:
            request = _request(resources, todo, strict=not joined)
            bar = tqdm(total=len(todo), unit="trial", disable=not progress, file=sys.stderr, dynamic_ncols=True)
            recorder = _Recorder(store, {unit.key: unit for unit in units}, storage, bar)
            # An ablated trial of a trajectory method starts from the masks its trajectory
            # reached: such trials are a second experiment, after the first.
            phases = [[unit for unit in units if needs_reached_masks(unit) == later] for later in (False, True)]
            try:
                with _environment(QUIET_TUNE):
                    for phase, batch in enumerate(batch for batch in phases if batch):
                        reached = [store.read_masks(reached_masks_key(unit)) if needs_reached_masks(unit) else None for unit in batch]
                        tuner = _tuner(batch, store, datasets, request, ray_config, checkpoint_every, storage, [recorder, *callbacks], reached, phase)
                        tuner.fit()
            finally:
                bar.close()
        for spec in todo:
            record = recorder.final.get(spec.key)
            counts[record["status"] if record else "unfinished"] += 1
    # Finished trials need no checkpoint, including those a killed run finished but left behind.
    _discard_checkpoints(storage, [unit.key for unit in all_units if all(store.is_final(spec.key) for spec in member_specs(unit))])
    return counts


def _request(resources: ResourcesConfig, todo: Sequence[TrialSpec], strict: bool) -> dict[str, float]:
    """Each trial's resources on the cluster Ray is connected to, the user told of changes."""
    request, notes = plan_resources(
        resources.cpu,
        resources.gpu,
        [node["Resources"] for node in ray.nodes() if node["Alive"]],
        cpu_only=all(spec.train.device == "cpu" for spec in todo),
        strict=strict,
    )
    for note in notes:
        print(f"pai-bench: {note}", file=sys.stderr)
    return request


def _tuner(
    todo: Sequence[TrialSpec | Trajectory],
    store: ResultStore,
    datasets: Mapping[tuple, Dataset],
    request: dict[str, float],
    ray_config: RayConfig,
    checkpoint_every: int,
    storage: str,
    callbacks: list,
    reached: Sequence[Any] = (),
    phase: int = 0,
) -> tune.Tuner:
    """One Tune experiment whose trials are `todo` (trials and trajectories), each resuming
    from its records' checkpoint."""
    keys = list(dict.fromkeys(data_key(member_specs(unit)[0]) for unit in todo))
    # Once per dataset, shared by the trials; each is in the object store before the next loads.
    data_refs = [ray.put(share(datasets[key])) for key in keys]
    # The masks an ablated trial of a trajectory method starts from, each put once.
    mask_refs = [ray.put(masks) for masks in reached if masks is not None]
    mask_index = iter(range(len(mask_refs)))
    trials = []
    for unit, masks in zip(todo, list(reached) or [None] * len(todo)):
        members = member_specs(unit)
        trial = {
            "key": unit.key,
            "spec": members[0].as_dict(),
            "data": keys.index(data_key(members[0])),
            "checkpoint_every": checkpoint_every,
            "resume": next((point for point in (resume_point(store.read(spec.key)) for spec in members) if point), None),
        }
        if isinstance(unit, Trajectory):
            trial["trajectory"] = [spec.as_dict() for spec in members]
        trial["masks"] = next(mask_index) if masks is not None else None
        trials.append(trial)
    return tune.Tuner(
        tune.with_resources(tune.with_parameters(_trainable, datasets=data_refs, masks=mask_refs), request),
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=ray_config.max_concurrent or None,
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            # A new experiment per invocation: a resumed trial reads its checkpoint from the
            # earlier experiment's folder, which this one never writes into.
            name=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" + (f"-{phase}" if phase else ""),
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=ray_config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks,
            verbose=0,
        ),
    )


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[bool]:
    """Ray for the run: the session this process already has, the cluster at `address`, or a
    new one on this machine (shut down after). Yields whether it joined a running cluster."""
    if ray.is_initialized():
        yield True
        return
    options: dict[str, Any] = {"logging_level": logging.WARNING}
    if address is None:
        # "local": a new Ray for this run, even where `ray start` left one running (which
        # ray.init() with no address would join); the dashboard is not worth its start-up here.
        options.update(address="local", include_dashboard=False)
    else:
        options.update(address=address)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = ""
        if address not in (None, "auto") and os.environ.get("RAY_AUTH_MODE") != "token":
            hint = "; a cluster with token authentication needs RAY_AUTH_MODE=token and its token here (README: Running with Ray)"
        raise UserError(f"cannot start or join Ray (ray.address={address}): {reason}{hint}") from None
    try:
        yield address is not None
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """`variables` set in os.environ for the duration, unless the user set them already."""
    added = {name: value for name, value in variables.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def plan_resources(
    cpu: float,
    gpu: float,
    nodes: Sequence[Mapping[str, float]],
    cpu_only: bool = False,
    strict: bool = True,
) -> tuple[dict[str, float], list[str]]:
    """What each trial asks the cluster for, given its nodes' resources, and notes for the user.

    A trial asking for a GPU on a cluster without one would wait forever, so the GPU share
    drops to 0 there (and when every trial trains on the CPU). A request that no node can hold
    is an error on a cluster started for this run (`strict`), a note on a joined one, which
    may yet grow.
    """
    notes = []
    if gpu > 0 and cpu_only:
        notes.append(f"train.device=cpu: trials ask for no GPU (resources.gpu={gpu:g} ignored)")
        gpu = 0.0
    elif gpu > 0 and not any(node.get("GPU", 0) > 0 for node in nodes):
        notes.append(f"no GPU in the Ray cluster: trials run on the CPU (resources.gpu={gpu:g} ignored)")
        gpu = 0.0
    if not any(node.get("CPU", 0) >= cpu and node.get("GPU", 0) >= gpu for node in nodes):
        largest = ", ".join(f"{node.get('CPU', 0):g} CPU + {node.get('GPU', 0):g} GPU" for node in nodes) or "no nodes"
        message = f"no node of the Ray cluster can hold a trial of resources.cpu={cpu:g} resources.gpu={gpu:g} (nodes: {largest})"
        if strict:
            raise UserError(message + "; ask for less")
        notes.append(message + "; trials wait until one joins")
    return {"cpu": cpu, "gpu": gpu}, notes


def _storage(storage: str | None, out: Path) -> str:
    """Tune's storage: an absolute path (Tune requires one) or a URI such as s3://bucket/x."""
    if storage is None:
        return str((out / "ray").resolve())
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def _trial_name(trial: Any) -> str:
    config = trial.config["trial"]
    spec = config["spec"]
    cell = f"{spec['cell']}-" if spec.get("cell") else ""
    ablation = f"-{spec['ablation']}" if spec.get("ablation") else ""
    row = spec.get("row") or spec["method"]  # a variant's name (pai_bench.variants), else the method
    if config.get("trajectory"):
        return f"{cell}{row}-trajectory-seed{spec['seed']}-{config['key']}"
    return f"{cell}{row}{ablation}-s{spec['sparsity']:g}-seed{spec['seed']}-{config['key']}"


def _trainable(config: dict[str, Any], datasets: list, masks: list = ()) -> None:
    """One trial in a Tune worker: run it with Tune's hooks, then report its record."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint otherwise
    # Ray sets OMP_NUM_THREADS to the trial's CPUs only where the driver's environment left it
    # unset; a trial uses the CPUs it was given either way.
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    trial = config["trial"]
    hook = TuneCheckpoint(trial["checkpoint_every"], (trial["resume"] or {}).get("path"))
    dataset = unshare(ray.get(datasets[trial["data"]]))

    def report(record: dict[str, Any], reached: Any = None) -> None:
        record["runner"] = {
            "executor": "tune",
            "node": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
            "pid": os.getpid(),
            "threads": torch.get_num_threads(),
        }
        metrics = {"status": record["status"], RECORD: json.dumps(record, default=_plain)}
        if reached is not None:  # for the ablated trials of this mask, which the driver keeps
            metrics[MASKS] = base64.b64encode(masks_to_bytes(reached)).decode()
        tune.report(metrics)

    if trial.get("trajectory"):
        # One trajectory, one Tune trial: a report per record, as the trajectory reaches it.
        members = tuple(TrialSpec.from_dict(spec) for spec in trial["trajectory"])
        run_trajectory(Trajectory(members), dataset=dataset, checkpoint=hook, on_record=report, on_epoch=hook.report)
        return
    given = ray.get(masks[trial["masks"]]) if trial.get("masks") is not None else None
    report(run_trial(TrialSpec.from_dict(trial["spec"]), on_epoch=hook.report, dataset=dataset, checkpoint=hook, masks=given))


class TuneCheckpoint:
    """A trial's `CheckpointHook` inside Tune.

    `save` stages the state in a folder and the epoch's `report` hands it to Tune, which copies
    it to storage. `load` prefers the trial's own Tune checkpoint (after Tune retried it) and
    otherwise reads `resume_from`, the checkpoint an earlier run left.
    """

    def __init__(self, every: int, resume_from: str | None) -> None:
        self.every = every
        self.resume_from = resume_from
        self._staged: str | None = None

    def load(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None and self.resume_from is not None:
            if "://" not in self.resume_from:
                return read_checkpoint(self.resume_from)
            checkpoint = tune.Checkpoint(self.resume_from)
        if checkpoint is None:
            return None
        try:
            with checkpoint.as_directory() as folder:
                return read_state(Path(folder) / STATE_FILE)
        except Exception as error:  # storage gone or unreadable: start over, as read_state does
            print(f"warning: cannot read checkpoint {checkpoint.path} ({error}); the trial starts over", file=sys.stderr)
            return None

    def save(self, state: dict[str, Any]) -> None:
        if self._staged:  # not reported yet (a trajectory saves at a level's start): superseded
            shutil.rmtree(self._staged, ignore_errors=True)
        self._staged = tempfile.mkdtemp(prefix="pai-bench-checkpoint-")
        torch.save(state, Path(self._staged) / STATE_FILE)

    def report(self, metrics: dict[str, Any]) -> None:
        staged, self._staged = self._staged, None
        try:
            tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(staged) if staged else None)
        finally:
            if staged:
                shutil.rmtree(staged, ignore_errors=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class _Recorder(tune.Callback):
    """The driver's side: writes every record, and shows trials done / running / failed.

    `units` maps each Tune trial's key to what it runs: a trial, or a trajectory whose members'
    records arrive one by one (each member counts as a trial in the progress bar).
    """

    def __init__(self, store: ResultStore, units: Mapping[str, TrialSpec | Trajectory], storage: str, bar: tqdm) -> None:
        self.store = store
        self.units = units
        self.specs = {spec.key: spec for unit in units.values() for spec in member_specs(unit)}
        self.storage = storage
        self.bar = bar
        self.final: dict[str, dict[str, Any]] = {}
        self.running: dict[str, dict[str, Any]] = {}

    def _pending(self, trial: Any) -> list[TrialSpec]:
        """The members of a Tune trial with no final record yet (written by this run or before)."""
        unit = self.units[trial.config["trial"]["key"]]
        return [spec for spec in member_specs(unit) if spec.key not in self.final and not self.store.is_final(spec.key)]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for spec in self._pending(trial):
            record = base_record(spec, "running")
            # A trial Tune restarts after a lost worker keeps the latest checkpoint it reached.
            point = self.running.get(spec.key, {}).get("checkpoint") or trial.config["trial"]["resume"]
            if point:
                record["checkpoint"] = dict(point)
            self.running[spec.key] = record
            self.store.write(record)
        self._show()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        # The result that carried the checkpoint is the trial's last one: Tune processes no other
        # result of the trial until the checkpoint is handled.
        point = {"path": _location(self.storage, checkpoint.path), "epoch": trial.last_result.get("epoch")}
        for spec in member_specs(self.units[trial.config["trial"]["key"]]):
            if spec.key in self.running and spec.key not in self.final:
                self.running[spec.key]["checkpoint"] = dict(point)
                self.store.write(self.running[spec.key])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if RECORD not in result:
            return
        # Taken out of the result, so Tune's own logs and experiment state stay small.
        record = json.loads(result.pop(RECORD))
        reached = result.pop(MASKS, None)
        if reached is not None and self.store.read_masks(record["key"]) is None:
            self.store.write_masks(record["key"], masks_from_bytes(base64.b64decode(reached)))
        if record["key"] not in self.running:  # done before this run, handed out again by a resumed trajectory
            return
        if record["status"] == "failed" and self.running.get(record["key"], {}).get("checkpoint"):
            record["checkpoint"] = self.running[record["key"]]["checkpoint"]
        self._finish(record)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        unit = self.units[trial.config["trial"]["key"]]
        self.bar.write(f"trial {unit.key} ({unit.label}) lost its worker: {_error(trial)}; retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for spec in self._pending(trial):
            record = dict(self.running.get(spec.key) or base_record(spec, "running"))
            record.update(status="failed", error=f"worker failed {trial.num_failures} time(s), the last: {_error(trial)}")
            self._finish(record)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for spec in self._pending(trial):  # a trial function that returned without its record: a bug
            record = dict(self.running.get(spec.key) or base_record(spec, "running"))
            record.update(status="failed", error="the trial ended without reporting its record")
            self._finish(record)

    def _finish(self, record: dict[str, Any]) -> None:
        self.final[record["key"]] = record
        self.running.pop(record["key"], None)
        self.store.write(record)
        if record["status"] == "failed":
            spec = self.specs[record["key"]]
            self.bar.write(f"trial {spec.key} ({spec.label}) failed: {record.get('error')}")
        self.bar.update()
        self._show()

    def _show(self) -> None:
        statuses = Counter(record["status"] for record in self.final.values())
        shown = {"running": len(self.running), **{status: statuses[status] for status in ("failed", "diverged") if statuses[status]}}
        self.bar.set_postfix(shown, refresh=True)


def _location(storage: str, path: str) -> str:
    """A checkpoint's path as Tune reports it (a path on the storage's filesystem), as a path
    or URI to read it back from."""
    if "://" not in storage:
        return path
    scheme, rest = storage.rstrip("/").split("://", 1)
    # Object stores (s3://bucket/x) keep the bucket in the path; hdfs://host:port/x drops the host.
    for root in (rest, "/" + rest.partition("/")[2]):
        if path == root or path.startswith(root + "/"):
            return storage.rstrip("/") + path[len(root) :]
    return f"{scheme}://{path.lstrip('/')}"


def _discard_checkpoints(storage: str, keys: Sequence[str]) -> None:
    """Delete the checkpoints of finished trials, from this run and earlier ones (local storage)."""
    if "://" in storage or not keys:
        return
    root = Path(storage)
    for key in keys:
        for folder in root.glob(f"*/*-{key}/checkpoint_*"):
            shutil.rmtree(folder, ignore_errors=True)


def _error(trial: Any) -> str:
    text = trial.get_error() if hasattr(trial, "get_error") else None
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
