"""How long each method takes to prune ResNet-20 at 98 % with the default pruning split.

Targets (issue 3): PHEW <= 30 s on CPU; PX with 100 rounds <= 5 s on one GPU. The pruning
split is 10 CIFAR-10-sized examples per class; by default Gaussian inputs (timing does not
depend on the pixels), `--data quickstart` uses the shipped real images.

    python benchmarks/prune_speed.py                      # every registered method, CPU
    python benchmarks/prune_speed.py --device cuda --methods px synflow --out speed.json
    python benchmarks/prune_speed.py --device cuda --methods px --profile px.txt   # where the time goes
    python benchmarks/prune_speed.py --device cuda --methods px px:variant=uniform px:dtype=float32

A method is `NAME` or `NAME:OPTION=VALUE[:OPTION=VALUE...]` (values read as YAML), so each
variant of a method is timed as its own row.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import yaml

import pai_bench
from pai_bench.data import load_dataset
from pai_bench.data.splits import class_balanced_indices
from pai_bench.data.augment import normalize


def pruning_batch(source: str, device: torch.device, per_class: int = 10) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if source == "gaussian":
        generator = torch.Generator().manual_seed(0)
        inputs, targets = torch.randn(10 * per_class, 3, 32, 32, generator=generator), torch.arange(10 * per_class) % 10
    else:
        dataset = load_dataset("quickstart")
        split = dataset.train.subset(class_balanced_indices(dataset.train.labels, per_class, seed=0))
        inputs, targets = normalize(split.images, dataset.mean, dataset.std), split.labels
    return [(inputs.to(device), targets.to(device))]


def method_spec(text: str) -> tuple[str, dict]:
    """`px:variant=uniform:rounds=10` -> ("px", {"variant": "uniform", "rounds": 10})."""
    name, *options = text.split(":")
    parsed = {}
    for option in options:
        key, separator, value = option.partition("=")
        if not separator or not key:
            raise SystemExit(f"bad method option {option!r} in {text!r}: expected OPTION=VALUE")
        parsed[key] = yaml.safe_load(value)
    return name, parsed


def time_method(spec: str, sparsity: float, batches, device: torch.device, repeats: int) -> dict:
    method, options = method_spec(spec)
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0).to(device)
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = pai_bench.prune(model, method, sparsity, batches, seed=0, **options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return {
        "method": spec,
        "options": result.options,
        "rounds": result.rounds,
        "seconds": min(seconds),
        "kept": result.kept,
        "total": result.total,
        "empty_layers": sum(stat.collapsed for stat in result.layer_stats),
    }


def profile_method(spec: str, sparsity: float, batches, device: torch.device, rounds: int, path: str) -> None:
    """torch.profiler's operator table of one prune with `rounds` rounds, written to `path`:
    what to shorten if a method misses its time on a GPU."""
    from torch.profiler import ProfilerActivity, profile

    method, options = method_spec(spec)
    options["rounds"] = rounds
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0).to(device)
    pai_bench.prune(model, method, sparsity, batches, seed=0, **options)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        pai_bench.prune(model, method, sparsity, batches, seed=0, **options)
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "w") as handle:
        handle.write(f"{spec}, {rounds} rounds, {device}\n\nby {sort.replace('_', ' ')}\n")
        handle.write(prof.key_averages().table(sort_by=sort, row_limit=30))
        handle.write("\n\nby CPU time (Python and launch overhead)\n")
        handle.write(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))
    print(f"profile of {spec} ({rounds} rounds) written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=None, help="NAME or NAME:OPTION=VALUE...; default: every registered method but dense")
    parser.add_argument("--sparsity", type=float, default=0.98)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", choices=("gaussian", "quickstart"), default="gaussian")
    parser.add_argument("--repeats", type=int, default=1, help="report the fastest of this many runs")
    parser.add_argument("--per-class", type=int, default=10, help="pruning examples per class (the protocol's 10; fewer only to rehearse)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument("--profile", default=None, help="also profile the first method (10 rounds) into this text file")
    parser.add_argument("--profile-rounds", type=int, default=10)
    args = parser.parse_args()

    device = torch.device(args.device)
    methods = args.methods or [m for m in pai_bench.list_methods() if m != "dense"]
    batches = pruning_batch(args.data, device, args.per_class)
    report = {
        "model": "resnet20",
        "sparsity": args.sparsity,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "data": args.data,
        "examples_per_class": args.per_class,
        "repeats": args.repeats,
        "results": [],
    }
    for method in methods:
        row = time_method(method, args.sparsity, batches, device, args.repeats)
        report["results"].append(row)
        print(f"{method:>20}  rounds={row['rounds']:<4} {row['seconds']:8.2f} s  kept {row['kept']}/{row['total']}  empty layers {row['empty_layers']}", flush=True)
        if args.out:  # after each method: a run stopped at a time limit keeps the rows it has
            with open(args.out, "w") as handle:
                json.dump(report, handle, indent=1)
    if args.profile:
        profile_method(methods[0], args.sparsity, batches, device, args.profile_rounds, args.profile)


if __name__ == "__main__":
    main()
