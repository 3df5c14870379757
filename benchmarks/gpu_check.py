"""Every GPU figure pai-bench still needs, from one command of at most about 9 minutes.

Why one command: GPU time comes in short windows (about 15 minutes, the machine's start
included), so the figures come from one call that writes each step's JSON as soon as the step
ends, and the summary after every step: a run cut short still returns what it measured. The
steps run in order of priority, each in its own process(es) under a time budget; a step that
runs out of time is stopped (what it wrote so far is kept), and a step that no longer fits in
what is left is skipped and recorded as skipped, so the whole never overruns.

1. compile_check: graphs, graph breaks and CUDA-graph skips of the compiled crop-flip step, and
   its first-batch gradients against float64 (`compile_check.py`).
2. throughput: (a) the PaI repos' pipeline, (b) one engine trial, (e) pai-bench's fp32 loop,
   (c) 4 and 8 packed processes, (d) 8 stacked; images/s, ratios to (a), peak memory per trial,
   warm-up (compile) seconds (`throughput.py`).
3. prune_speed: PX (variants authors and uniform), SynFlow, SNIP, GraSP at 98 % on the device,
   and a profile of PX (`prune_speed.py`).
4. engine_accuracy: dense ResNet-20 on the shared CIFAR-10 JPEGs through `pai-bench run`, the
   fast engine and `train.fast=false` side by side (two processes, 2 seeds each), for the
   longest schedule that fits the time left (at most --max-epochs); the gap and its seed spread.

`summary.json` and `summary.md` hold each step's status and the figures against the targets:
one trial >= 3x the repos' pipeline, the best aggregate >= 20x, <= 2 GB per trial, the engines
within 0.5 points, PX's 100 rounds <= 5 s.

    bash benchmarks/gpu_check.sh                          # the GPU machine: benchmarks/README.md
    python benchmarks/gpu_check.py --rehearse --out /tmp/gpu-check   # the same steps, CPU, tiny sizes

The rehearsal runs every step with the same scripts and the same driver at tiny sizes (4-image
batches, one timed step, 2 rounds, 4 training images per class), compiling with `aot_eager` (the graphs
Dynamo and AOT autograd capture, without inductor's code generation). It cannot exercise
inductor, CUDA graphs, bf16 autocast on a GPU or GPU memory, and on a CPU `pai-bench run` trains
both engines' trials with the reference loop (the fast engine is for GPUs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: The targets, as issue 8 and issue 3 set them.
SINGLE_SPEEDUP = 3.0  # one engine trial against the repos' pipeline
AGGREGATE_SPEEDUP = 20.0  # all trials on the GPU together against the repos' pipeline
MEMORY_GB = 2.0  # peak memory per trial
ACCURACY_GAP = 0.5  # |mean fast - mean fp32|, points
PX_SECONDS, PX_ROUNDS = 5.0, 100

#: Modules `import pai_bench` needs, and those `pai-bench run` needs besides (accuracy step).
CORE_MODULES = ("torch", "torchvision", "PIL", "yaml", "omegaconf", "tqdm")
RUN_MODULES = ("pandas", "scipy", "statsmodels", "tabulate", "matplotlib")


@dataclass
class Sizes:
    """What each step runs: the real measurement on a GPU, or its tiny rehearsal on a CPU."""

    device: str
    compile_check: list[str]
    throughput: list[str]
    prune_methods: list[str]
    prune: list[str]
    accuracy_set: list[str]
    budgets: dict[str, float]  # the most seconds each step may take
    minimums: dict[str, float]  # a step is skipped when less than this is left
    total_s: float
    max_epochs: int
    min_epochs: int
    seeds: int = 2
    per_class: tuple[int, int] | None = None  # (train, test) images per class of a tiny data folder


def gpu_sizes() -> Sizes:
    return Sizes(
        device="cuda",
        compile_check=["--steps", "5", "--augments", "crop-flip"],
        throughput=["--steps", "300", "--packed", "4", "8", "--stacked", "8"],
        prune_methods=["px", "px:variant=uniform", "px:variant=release-2024", "synflow", "snip", "grasp"],
        prune=["--repeats", "2"],
        accuracy_set=[],
        budgets={"compile_check": 130, "throughput": 180, "prune_speed": 45},
        minimums={"compile_check": 60, "throughput": 60, "prune_speed": 20, "engine_accuracy": 90},
        total_s=540,
        max_epochs=10,
        min_epochs=3,
    )


def rehearsal_sizes() -> Sizes:
    """Tiny sizes, and budgets for a CPU that other work shares (a 2-core machine under a load of
    12 ran it in 3 min 12 s of CPU time and 8 min of wall time)."""
    return Sizes(
        device="cpu",
        compile_check=["--steps", "1", "--batch", "4", "--backend", "aot_eager", "--augments", "crop-flip"],
        throughput=["--steps", "1", "--batch", "4", "--workers", "0", "--packed", "2", "--stacked", "2", "--compile-backend", "aot_eager"],
        prune_methods=["px:rounds=2", "px:variant=uniform:rounds=2", "px:variant=release-2024:rounds=2", "synflow:rounds=2", "snip", "grasp"],
        prune=["--repeats", "1", "--per-class", "1", "--profile-rounds", "1"],
        accuracy_set=["train.device=cpu", "train.batch_size=8", "train.eval_batch_size=20", "data.prune_per_class=2"],
        budgets={"compile_check": 200, "throughput": 260, "prune_speed": 120},
        minimums={"compile_check": 10, "throughput": 10, "prune_speed": 5, "engine_accuracy": 15},
        total_s=720,
        max_epochs=2,
        min_epochs=1,
        per_class=(4, 2),
    )


@dataclass
class Clock:
    started: float  # time.time() when the check began (the shell's start, with its set-up)
    total_s: float

    def left(self) -> float:
        return self.started + self.total_s - time.time()

    def elapsed(self) -> float:
        return time.time() - self.started


@dataclass
class Check:
    """The run's summary, rewritten after every step."""

    out: Path
    clock: Clock
    summary: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        self.summary["elapsed_s"] = round(self.clock.elapsed(), 1)
        self.summary["targets"] = evaluate_targets(self.figures())
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str))
        (self.out / "summary.md").write_text(summary_markdown(self.summary))

    def figures(self) -> dict[str, Any]:
        """Each step's JSON as far as it was written."""
        return {name: read_json(self.out / f"{name}.json") for name in ("compile_check", "throughput", "prune_speed", "engine_accuracy")}

    def record(self, name: str, **result: Any) -> None:
        self.summary.setdefault("steps", {})[name] = result
        self.save()


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written, or cut off mid-write when its step was stopped
        return None


def run_processes(commands: list[list[str]], logs: list[Path], timeout: float) -> tuple[str, str | None]:
    """Run `commands` side by side, each writing to its log; stop all of them (and the workers
    they started: each has its own process group) once `timeout` seconds have passed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    processes = []
    for command, log in zip(commands, logs, strict=True):
        with open(log, "w") as handle:
            processes.append(subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True))
    deadline = time.monotonic() + timeout
    timed_out = False
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out:
        for process in processes:
            _stop(process)
        return "timed out", f"stopped at its budget of {timeout:.0f} s"
    codes = [process.returncode for process in processes]
    if any(codes):
        return "failed", f"exit codes {codes}; see the log"
    return "done", None


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the step's process group (its worker processes too), then SIGKILL to whatever
    of the group is left after 5 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_step(check: Check, name: str, commands: list[list[str]], budget: float, minimum: float, log_names: list[str] | None = None) -> str:
    """Run one step under its budget (and what is left of the whole), or skip it; record it."""
    left = check.clock.left()
    if left < minimum:
        check.record(name, status="skipped", reason=f"{left:.0f} s left, it needs at least {minimum:.0f} s", budget_s=budget)
        print(f"== {name}: skipped ({left:.0f} s left, needs {minimum:.0f} s)", flush=True)
        return "skipped"
    timeout = min(budget, left)
    logs = [check.out / f"{log}.log" for log in (log_names or [name])]
    print(f"== {name}: up to {timeout:.0f} s", flush=True)
    started = time.time()
    status, reason = run_processes(commands, logs, timeout)
    seconds = time.time() - started
    check.record(name, status=status, reason=reason, seconds=round(seconds, 1), budget_s=round(timeout), logs=[log.name for log in logs])
    print(f"== {name}: {status} in {seconds:.0f} s{f' ({reason})' if reason else ''}", flush=True)
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()
        print("\n".join(f"   {line}" for line in lines[-10:]), flush=True)
    return status


# --- data -------------------------------------------------------------------------------------


def default_tar() -> Path:
    """The CIFAR-10 JPEGs: in the .gpu bundle on a GPU machine, else beside the checkout."""
    for candidate in (REPO / ".gpu" / "cifar10-jpeg.tar.gz", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"):
        if candidate.is_file():
            return candidate
    return REPO / ".gpu" / "cifar10-jpeg.tar.gz"


def extract_all(tar: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "xzf", str(tar), "-C", str(root)], check=True)


def extract_tiny(tar: Path, root: Path, per_class: tuple[int, int]) -> None:
    """The first `per_class` (train, test) images of each class, in the same ImageFolder layout."""
    wanted = {"train": per_class[0], "test": per_class[1]}
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(tar) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] not in wanted:
                continue
            count = taken.get(parts[:2], 0)
            if count < wanted[parts[0]]:
                archive.extract(member, root, filter="data")
                taken[parts[:2]] = count + 1


def prepare_data(args: argparse.Namespace, sizes: Sizes, check: Check) -> Path | None:
    """An extracted CIFAR-10 JPEG folder, decoded once into pai-bench's cache (so each step's
    processes read one file), or None when there is none to be had."""
    started = time.time()
    root = Path(args.data_root)
    try:
        if not (root / "train").is_dir():
            if not Path(args.data_tar).is_file():
                check.record("data", status="failed", reason=f"no {args.data_tar}: run ../shared/tools/gpu-bundle.sh here and carry .gpu")
                return None
            if sizes.per_class:
                extract_tiny(Path(args.data_tar), root, sizes.per_class)
            else:
                extract_all(Path(args.data_tar), root)
        from pai_bench.data import load_dataset

        dataset = load_dataset("imagefolder", str(root))
    except Exception as error:  # recorded: the steps that need no real data still run
        check.record("data", status="failed", reason=f"{type(error).__name__}: {error}", seconds=round(time.time() - started, 1))
        return None
    check.summary["data_images"] = {"train": len(dataset.train.labels), "test": len(dataset.test.labels)}
    check.record("data", status="done", root=str(root), seconds=round(time.time() - started, 1))
    print(f"== data: {root}, {len(dataset.train.labels)} train / {len(dataset.test.labels)} test images, {time.time() - started:.0f} s", flush=True)
    return root


# --- the accuracy step's plan -----------------------------------------------------------------

#: What the plan assumes when the throughput step measured nothing (a conservative H100 guess).
FALLBACK_RATES = {"fast": 20000.0, "fp32": 8000.0, "warmup_s": 120.0}
#: Process start, dataset read from the cache, the second seed's re-trace; and the slow-down of
#: two processes time-slicing one GPU.
START_S, RETRACE_S, CONTENTION = 25.0, 20.0, 1.5


def plan_epochs(
    left_s: float, throughput: dict[str, Any] | None, train_images: int, test_images: int, seeds: int, max_epochs: int, min_epochs: int, compiles: bool = True
) -> tuple[int | None, dict[str, Any]]:
    """The most epochs (up to `max_epochs`) that both engines' runs of `seeds` seeds can finish
    in `left_s` side by side, from the speeds the throughput step measured; None when fewer
    than `min_epochs` fit. `compiles`: the fast runs compile their step (on a GPU; on a CPU
    `pai-bench run` trains both with the reference loop)."""
    rates = dict(FALLBACK_RATES)
    source = "assumed"
    if throughput and "single" in throughput and "fp32_loop" in throughput:
        rates = {"fast": throughput["single"]["images_per_s"], "fp32": throughput["fp32_loop"]["images_per_s"], "warmup_s": throughput["single"].get("warmup_s", FALLBACK_RATES["warmup_s"])}
        source = "measured by the throughput step"
    if not compiles:  # both runs train with the reference loop
        rates["fast"] = rates["fp32"]
    # an evaluation pass costs about a third of a training pass per image
    epoch_s = {engine: (train_images + test_images / 3) / rates[engine] for engine in ("fast", "fp32")}
    # the suite's run compiles more graphs than (b) warmed up (its short last batch, evaluation),
    # though (b) left its training graphs in inductor's cache
    compile_s = 1.5 * rates["warmup_s"] + (seeds - 1) * RETRACE_S if compiles else 0.0
    fixed_s = {"fast": START_S + compile_s, "fp32": START_S}
    fitting = [
        epochs
        for epochs in range(1, max_epochs + 1)
        if all(fixed_s[engine] + CONTENTION * seeds * epochs * epoch_s[engine] <= left_s for engine in epoch_s)
    ]
    epochs = max(fitting) if fitting and max(fitting) >= min_epochs else None
    plan = {"epochs": epochs, "left_s": round(left_s), "rates": rates, "rates_source": source, "epoch_s": epoch_s, "fixed_s": fixed_s}
    return epochs, plan


def milestones(epochs: int) -> list[int]:
    """The protocol's learning-rate drops (80 and 120 of 160 epochs) scaled to `epochs`."""
    return sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)})


def accuracy_step(check: Check, args: argparse.Namespace, sizes: Sizes, data_root: Path | None) -> None:
    name = "engine_accuracy"
    if data_root is None:
        check.record(name, status="skipped", reason="no CIFAR-10 JPEG folder (see the data step)")
        return
    missing = [module for module in RUN_MODULES if importlib.util.find_spec(module) is None]
    if missing:
        check.record(name, status="skipped", reason=f"`pai-bench run` needs {', '.join(missing)}: add them to the .gpu bundle")
        return
    images = check.summary.get("data_images", {"train": 50000, "test": 10000})
    left = check.clock.left() - args.margin
    epochs, plan = plan_epochs(left, read_json(check.out / "throughput.json"), images["train"], images["test"], sizes.seeds, sizes.max_epochs, sizes.min_epochs, compiles=sizes.device == "cuda")
    check.summary["accuracy_plan"] = plan
    if epochs is None:
        check.record(name, status="skipped", reason=f"fewer than {sizes.min_epochs} epochs fit in the {left:.0f} s left", plan=plan)
        print(f"== {name}: skipped (fewer than {sizes.min_epochs} epochs fit in {left:.0f} s)", flush=True)
        return
    work = Path(args.work) / "engine-accuracy"
    drops = milestones(epochs)
    commands = [
        [
            sys.executable, str(HERE / "engine_accuracy.py"), "--engines", engine, "--executor", "local", "--seeds", str(sizes.seeds),
            "--epochs", str(epochs), "--milestones", *map(str, drops), "--out-dir", str(work), "--out", str(check.out / f"{name}-{engine}.json"),
            "--set", "data.name=imagefolder", f"data.root={data_root}", *sizes.accuracy_set,
        ]
        for engine in ("fast", "fp32")
    ]
    for engine in ("fast", "fp32"):  # a fresh run each time: records of an earlier check do not count
        _remove_tree(work / engine)
    print(f"== {name}: {epochs} epochs (milestones {drops}), {sizes.seeds} seeds per engine", flush=True)
    run_step(check, name, commands, left, sizes.minimums[name], [f"{name}-fast", f"{name}-fp32"])
    result = compare_engines(work, epochs, drops)
    (check.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    failed = {f"{engine} seed {seed}": error for engine in ("fast", "fp32") for seed, error in result[engine]["failed"].items()}
    step = check.summary["steps"][name]
    if failed and step["status"] == "done":  # `pai-bench run` records a failed trial and exits 0
        step.update(status="failed", reason="; ".join(f"{trial}: {error}" for trial, error in failed.items()))
    check.save()


def compare_engines(work: Path, epochs: int, drops: list[int]) -> dict[str, Any]:
    """Both engines' finished seeds, read from their runs' records (so a run stopped at the
    time limit still gives the seeds it finished), and their comparison."""
    sys.path.insert(0, str(HERE))
    from engine_accuracy import TOLERANCE, compare, summarize

    from pai_bench.store import ResultStore

    runs = {}
    for engine in ("fast", "fp32"):
        folder = work / engine
        records = ResultStore(folder).records() if (folder / "trials").is_dir() else []
        runs[engine] = summarize(records)
    return {"epochs": epochs, "milestones": drops, "tolerance": TOLERANCE, **runs, "comparison": compare(runs["fast"], runs["fp32"])}


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)


# --- targets ----------------------------------------------------------------------------------


def _verdict(value: float | None, target: float, at_least: bool, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "not measured"
    if (value >= target) if at_least else (value <= target):
        return "met"
    return f"missed by {abs(value - target):.2f}{unit}"


def evaluate_targets(figures: dict[str, dict[str, Any] | None]) -> list[dict[str, str]]:
    """One row per target: what was measured, and met / missed by how much / not measured."""
    rows = []
    throughput = figures.get("throughput") or {}
    ratios = throughput.get("ratios", {})
    single = ratios.get("b/a")
    rows.append({"target": f"one trial >= {SINGLE_SPEEDUP:g}x the repos' pipeline", "figure": _times(single), "verdict": _verdict(single, SINGLE_SPEEDUP, True, "x")})

    aggregate = {key: value for key, value in ratios.items() if key[0] in "cd"}
    best = max(aggregate.values(), default=None)
    figure = ", ".join(f"{key} {value:.1f}x" for key, value in sorted(aggregate.items())) or "-"
    rows.append({"target": f"aggregate >= {AGGREGATE_SPEEDUP:g}x", "figure": figure, "verdict": _verdict(best, AGGREGATE_SPEEDUP, True, "x")})

    memory = per_trial_memory(throughput)
    worst = max(memory.values(), default=None)
    figure = ", ".join(f"{key} {value:.2f} GB" for key, value in memory.items()) or "-"
    rows.append({"target": f"<= {MEMORY_GB:g} GB per trial (reserved)", "figure": figure, "verdict": _verdict(worst, MEMORY_GB, False, " GB")})

    accuracy = figures.get("engine_accuracy") or {}
    comparison = accuracy.get("comparison") or {}
    gap = comparison.get("gap")
    rows.append({"target": f"engines within {ACCURACY_GAP:g} points", "figure": _accuracy_figure(accuracy), "verdict": _verdict(abs(gap) if gap is not None else None, ACCURACY_GAP, False, " points")})

    prune = figures.get("prune_speed") or {}
    px = [row for row in prune.get("results", []) if row["method"].split(":")[0] == "px"]
    full = [row for row in px if row["rounds"] == PX_ROUNDS]
    figure = ", ".join(f"{row['method']} {row['rounds']} rounds {row['seconds']:.2f} s" for row in px) or "-"
    verdict = _verdict(max((row["seconds"] for row in full), default=None), PX_SECONDS, False, " s")
    if px and not full:
        verdict = f"not measured at {PX_ROUNDS} rounds"
    rows.append({"target": f"PX {PX_ROUNDS} rounds <= {PX_SECONDS:g} s", "figure": figure, "verdict": verdict})

    fallbacks = compile_fallbacks(figures)
    rows.append({
        "target": "the engine compiles (no fallback to eager)",
        "figure": "; ".join(f"{where}: {reason}" for where, reason in fallbacks.items()) or "-",
        "verdict": "missed: see the reasons" if fallbacks else ("met" if _compiled_somewhere(figures) else "not measured"),
    })
    compiled = (figures.get("compile_check") or {}).get("rows", [])
    for row in compiled:
        if "unique_graphs" not in row:
            continue
        breaks = sum(row["graph_breaks"].values())
        figure = f"{row['unique_graphs']} graphs, {breaks} breaks, {row['cudagraph_skips']} CUDA-graph skips"
        if "gradient_error_compiled" in row:
            figure += f"; gradient error vs float64 {row['gradient_error_compiled']:.1e} compiled, {row['gradient_error_eager']:.1e} eager"
        # the optimizer asks for two breaks around its step; anything more, or a skipped CUDA
        # graph, is launch overhead back in the step
        healthy = breaks <= 2 and row["cudagraph_skips"] == 0
        rows.append({"target": f"compiled {row['augment']} step: <= 2 breaks, no CUDA-graph skip", "figure": figure, "verdict": "met" if healthy else "missed: see compile_check.json"})
    return rows


def compile_fallbacks(figures: dict[str, dict[str, Any] | None]) -> dict[str, str]:
    """Where the engine could not compile and trained eagerly, with the reason (or the engine
    name, where a measurement keeps only that): figures measured then are not the engine's."""
    found = {}
    for row in (figures.get("compile_check") or {}).get("rows", []):
        if row.get("engine_fallback"):
            found[f"compile_check {row['augment']}"] = row["engine_fallback"]
    throughput = figures.get("throughput") or {}
    for key, result in throughput.items():
        if not isinstance(result, dict):
            continue
        if result.get("engine_fallback"):
            found[f"throughput {key}"] = result["engine_fallback"]
        elif "fast-eager" in result.get("engines", []):
            found[f"throughput {key}"] = "fast-eager"
    for reason in ((figures.get("engine_accuracy") or {}).get("fast") or {}).get("engine_fallbacks", []):
        found["engine_accuracy"] = reason
    return found


def _compiled_somewhere(figures: dict[str, dict[str, Any] | None]) -> bool:
    return bool((figures.get("compile_check") or {}).get("rows")) or "single" in (figures.get("throughput") or {})


def per_trial_memory(throughput: dict[str, Any]) -> dict[str, float]:
    """Peak reserved memory of a trial in each measurement that has it: (b), each packed
    process's worst, and the stacked peak over its trials."""
    memory = {}
    if "peak_reserved_gb" in throughput.get("single", {}):
        memory["b"] = throughput["single"]["peak_reserved_gb"]
    for key, result in throughput.items():
        if key.startswith("packed_") and result.get("per_trial_peak_reserved_gb"):
            memory[f"c{result['trials']}"] = max(result["per_trial_peak_reserved_gb"])
    if "per_trial_peak_reserved_gb" in throughput.get("stacked", {}):
        memory[f"d{throughput['stacked']['trials']}"] = throughput["stacked"]["per_trial_peak_reserved_gb"]
    return memory


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _accuracy_figure(accuracy: dict[str, Any]) -> str:
    if not accuracy:
        return "-"
    parts = []
    for engine in ("fast", "fp32"):
        run = accuracy.get(engine) or {}
        seeds = ", ".join(f"{value:.2f}" for _, value in sorted((run.get("accuracy") or {}).items()))
        parts.append(f"{engine} [{seeds}] ({', '.join(run.get('engine', [])) or '-'})")
    comparison = accuracy.get("comparison") or {}
    text = f"{accuracy.get('epochs')} epochs: " + " vs ".join(parts)
    if comparison.get("gap") is not None:
        text += f"; gap {comparison['gap']:+.2f}"
        spreads = [f"{key} {comparison[key]:.2f}" for key in ("fast_std", "fp32_std", "per_seed_difference_std") if comparison.get(key) is not None]
        if spreads:
            text += f" (std: {', '.join(spreads)})"
    return text


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# GPU check {'rehearsal ' if summary.get('rehearsal') else ''}{summary.get('date', '')}",
        "",
        f"Device: {summary.get('device')}; torch {summary.get('torch')}; command: `{summary.get('command')}`; "
        f"{summary.get('elapsed_s')} s of a {summary.get('total_s')} s budget.",
        "",
        "| step | status | seconds | budget | note |",
        "|---|---|---|---|---|",
    ]
    for name, step in summary.get("steps", {}).items():
        lines.append(f"| {name} | {step.get('status')} | {step.get('seconds', '-')} | {step.get('budget_s', '-')} | {step.get('reason') or ''} |")
    if summary.get("rehearsal"):
        lines += ["", "A rehearsal on a CPU at tiny sizes: it exercises the steps, its figures measure nothing."]
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    for row in summary.get("targets", []):
        lines.append(f"| {row['target']} | {row['figure']} | {row['verdict']} |")
    return "\n".join(lines) + "\n"


# --- the run ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-out"), help="where each step's JSON and log, and the summary, go")
    parser.add_argument("--rehearse", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--data-tar", default=str(default_tar()), help="the CIFAR-10 JPEGs (ImageFolder layout) as a .tar.gz")
    parser.add_argument("--data-root", default=None, help="where they are or go extracted (default /tmp/cifar10-jpeg, or -tiny)")
    parser.add_argument("--work", default="/tmp/gpu-check-runs", help="the accuracy runs' folders")
    parser.add_argument("--total", type=float, default=None, help="seconds for the whole check, counted from --started-at (default 540; rehearsal 720)")
    parser.add_argument("--started-at", type=float, default=None, help="time.time() the call began (gpu_check.sh passes its start)")
    parser.add_argument("--margin", type=float, default=10, help="seconds kept free at the end for the summary")
    parser.add_argument("--only", nargs="+", default=None, choices=("compile_check", "throughput", "prune_speed", "engine_accuracy"), help="run only these steps")
    args = parser.parse_args(argv)

    sizes = rehearsal_sizes() if args.rehearse else gpu_sizes()
    clock = Clock(args.started_at or time.time(), args.total or sizes.total_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data_root is None:
        args.data_root = "/tmp/cifar10-jpeg-tiny" if args.rehearse else "/tmp/cifar10-jpeg"
    check = Check(out, clock)
    if args.only:  # a rerun of some steps adds to the summary of the run before it
        check.summary["steps"] = (read_json(out / "summary.json") or {}).get("steps", {})
    check.summary.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rehearsal=args.rehearse, total_s=clock.total_s, command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))
    missing = [module for module in CORE_MODULES if importlib.util.find_spec(module) is None]
    if missing:
        check.record("preflight", status="failed", reason=f"missing {', '.join(missing)}: carry the .gpu bundle (gpu-bundle.sh)")
        print(f"missing modules {missing}: nothing can run", flush=True)
        return 2
    import torch

    if sizes.device == "cuda" and not torch.cuda.is_available():
        check.record("preflight", status="failed", reason="no CUDA device (use --rehearse on a CPU)")
        print("no CUDA device: use --rehearse on a CPU", flush=True)
        return 2
    check.summary.update(device=torch.cuda.get_device_name() if sizes.device == "cuda" else "cpu (rehearsal)", torch=torch.__version__)
    check.save()
    wanted = set(args.only or ("compile_check", "throughput", "prune_speed", "engine_accuracy"))
    python = sys.executable
    data_root = prepare_data(args, sizes, check)
    device = ["--device", sizes.device]

    steps: list[tuple[str, Callable[[], list[list[str]]] | None]] = [
        ("compile_check", lambda: [[python, str(HERE / "compile_check.py"), *device, *sizes.compile_check, "--out", str(out / "compile_check.json")]]),
        (
            "throughput",
            lambda: [[python, str(HERE / "throughput.py"), *device, "--data", "imagefolder", "--root", str(data_root), *sizes.throughput, "--out", str(out / "throughput.json")]]
            if data_root
            else [],
        ),
        (
            "prune_speed",
            lambda: [[python, str(HERE / "prune_speed.py"), *device, "--methods", *sizes.prune_methods, *sizes.prune, "--out", str(out / "prune_speed.json"), "--profile", str(out / "px_profile.txt")]],
        ),
    ]
    for name, commands in steps:
        if name not in wanted:
            continue
        built = commands()
        if not built:
            check.record(name, status="skipped", reason="no CIFAR-10 JPEG folder (see the data step)")
            continue
        run_step(check, name, built, sizes.budgets[name], sizes.minimums[name])
    if "engine_accuracy" in wanted:
        accuracy_step(check, args, sizes, data_root)
    check.save()
    print((out / "summary.md").read_text(), flush=True)
    failed = [name for name, step in check.summary["steps"].items() if step["status"] not in ("done", "skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
