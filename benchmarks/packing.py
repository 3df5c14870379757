"""Issue 6's packing measurement: N trials sharing one GPU under Ray Tune against one at a time.

Runs the same cut-down suite twice through `run_suite` with the Tune executor: with
`resources.gpu=1` (one trial on the GPU at a time) and with `resources.gpu=1/N` (N at once),
each in its own folder. From the records: each run's wall time, the steady epoch time of a trial
(median over epochs after the first, which holds compilation), how many trials really ran at
once, and the aggregate speed-up N x (epoch alone) / (epoch packed). JSON with `--out`.

    python benchmarks/packing.py --set data.name=imagefolder data.root=/tmp/cifar10-jpeg \
        --out packing.json                                                # GPU machine, 4 trials
    python benchmarks/packing.py --suite quickstart --packed 2 --epochs 2 --cpu 1   # smoke, CPU
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from suite_runs import add_run_arguments, most_at_once, report_header, run, steady_epoch_seconds


def measure(args: argparse.Namespace, share: float, name: str) -> dict[str, Any]:
    overrides = [
        "methods=[dense,random]",
        "sparsities=[0.9]",
        f"seeds={args.packed // 2 + args.packed % 2}",
        f"train.epochs={args.epochs}",
        f"train.milestones=[{args.epochs}]",
        "executor=tune",
        f"resources.gpu={share if torch.cuda.is_available() else 0}",
        f"resources.cpu={args.cpu}",
        f"out={Path(args.out_dir) / name}",
        *args.set,
    ]
    records, wall = run(args.suite, overrides)
    return {
        "gpu_share": share,
        "trials": len(records),
        "done": sum(r.get("status") == "done" for r in records),
        "at_once": most_at_once(records),
        "steady_epoch_s": steady_epoch_seconds(records),
        "wall_s": wall,
        "engines": sorted({str(r.get("engine")) for r in records}),
        "overrides": overrides,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, "runs/packing")
    parser.add_argument("--packed", type=int, default=4, help="trials per GPU in the packed run")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--cpu", type=float, default=2, help="resources.cpu per trial")
    args = parser.parse_args()

    report: dict[str, Any] = {**report_header(args), "packed": args.packed}
    report["alone"] = measure(args, 1.0, "alone")
    report["packed_run"] = measure(args, 1.0 / args.packed, "packed")
    alone, packed = report["alone"]["steady_epoch_s"], report["packed_run"]["steady_epoch_s"]
    if alone and packed:
        report["aggregate_speedup"] = report["packed_run"]["at_once"] * alone / packed
        report["per_trial_slowdown"] = packed / alone
    for name in ("alone", "packed_run"):
        row = report[name]
        epoch = "-" if row["steady_epoch_s"] is None else f"{row['steady_epoch_s']:.2f} s"
        print(f"{name:10} gpu {row['gpu_share']:.2f}/trial: {row['done']}/{row['trials']} done, {row['at_once']} at once, "
              f"epoch {epoch}, wall {row['wall_s']:.0f} s")
    if "aggregate_speedup" in report:
        print(f"aggregate throughput packed / alone: {report['aggregate_speedup']:.2f}x "
              f"(each trial {report['per_trial_slowdown']:.2f}x slower)")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
