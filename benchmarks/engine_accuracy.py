"""Issue 8's accuracy check: the fast engine against the fp32 reference loop, same protocol.

Runs one suite's dense model twice through `run_suite`, with `train.fast=true` and with
`train.fast=false` (each in its own folder: `fast` is not in the trial key), and compares the
test accuracy over seeds. The target on one H100: dense ResNet-20, 30 epochs, 2 seeds each,
means within 0.5 points. Also prints each engine's median epoch time (the first epoch, which
holds compilation, left out) and writes everything as JSON.

    python benchmarks/engine_accuracy.py --set data.name=imagefolder data.root=/tmp/cifar10-jpeg \
        --out engine_accuracy.json                                       # GPU machine
    python benchmarks/engine_accuracy.py --suite quickstart --epochs 2 --milestones 1 \
        --executor local --out-dir /tmp/engine                            # smoke, CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


from suite_runs import add_run_arguments, report_header, run, steady_epoch_seconds

#: The largest gap of mean accuracy (points) between the engines that issue 8 accepts.
TOLERANCE = 0.5


def run_engine(args: argparse.Namespace, fast: bool) -> dict[str, Any]:
    name = "fast" if fast else "fp32"
    overrides = [
        "methods=[dense]",
        f"seeds={args.seeds}",
        f"train.epochs={args.epochs}",
        f"train.milestones=[{','.join(str(m) for m in args.milestones)}]",
        f"train.fast={str(fast).lower()}",
        f"executor={args.executor}",
        f"resources.gpu={args.gpu_share}",
        f"out={Path(args.out_dir) / name}",
        *args.set,
    ]
    records, wall = run(args.suite, overrides)
    done = [r for r in records if r.get("status") == "done"]
    return {
        "engine": sorted({str(r.get("engine")) for r in done}),
        "accuracy": {int(r["seed"]): float(r["test_acc"]) for r in done},
        "failed": {int(r["seed"]): r.get("error") for r in records if r.get("status") != "done"},
        "median_epoch_s": steady_epoch_seconds(records),
        "wall_s": wall,
        "overrides": overrides,
    }


def compare(fast: dict[str, Any], fp32: dict[str, Any]) -> dict[str, Any]:
    if not fast["accuracy"] or not fp32["accuracy"]:
        return {"gap": None, "within_tolerance": False}
    gap = statistics.mean(fast["accuracy"].values()) - statistics.mean(fp32["accuracy"].values())
    return {"gap": gap, "within_tolerance": abs(gap) <= TOLERANCE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, "runs/engine-accuracy")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--milestones", type=int, nargs="+", default=[15, 22])
    parser.add_argument("--executor", default="tune", choices=("tune", "local"))
    parser.add_argument("--gpu-share", type=float, default=0.5, help="resources.gpu per trial (0.5: both seeds at once)")
    args = parser.parse_args()

    report: dict[str, Any] = {**report_header(args), "epochs": args.epochs, "tolerance": TOLERANCE}
    for fast in (True, False):
        report["fast" if fast else "fp32"] = run_engine(args, fast)
        if args.out:  # after each run: a call stopped at its time limit keeps the first
            Path(args.out).write_text(json.dumps(report, indent=2))
    report["comparison"] = compare(report["fast"], report["fp32"])
    for name in ("fast", "fp32"):
        run = report[name]
        seeds = ", ".join(f"{acc:.2f}" for _, acc in sorted(run["accuracy"].items()))
        epoch = "-" if run["median_epoch_s"] is None else f"{run['median_epoch_s']:.2f} s"
        print(f"{name:5} engine {','.join(run['engine']):10} test acc by seed: {seeds:20} median epoch {epoch}, wall {run['wall_s']:.0f} s")
        for seed, error in run["failed"].items():
            print(f"      seed {seed} did not finish: {error}")
    gap = report["comparison"]["gap"]
    verdict = "within" if report["comparison"]["within_tolerance"] else "NOT within"
    print(f"fast - fp32 = {'n/a' if gap is None else f'{gap:+.2f}'} points: {verdict} {TOLERANCE} points")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
