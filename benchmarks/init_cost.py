"""What a prune-only suite (e.g. `init-cifar10`) costs per trial, to size a run before it starts.

Runs real prune-only trials (`pai_bench.trial.run_trial`, `train.epochs=0`) on one seed and
sparsity for each model and method, with iterative methods cut to `--rounds` rounds, and
extrapolates their pruning time to the suite's rounds (each round scores the whole network
once, so its cost hardly depends on the round). Reports per trial: the pruning seconds as
measured and extrapolated, the effective-mask, NTK and rounding seconds, the process CPU
seconds, and per (model, method) the estimate for the suite's sparsities x seeds.

Use one torch thread (`--threads 1`, the default) on a loaded machine: CPU seconds of one
thread are what an idle core would take, and a 2-core machine runs two such trials at once
(`executor=tune`, `resources.cpu=1`). The estimates scale each trial's wall seconds by its
CPU / wall ratio, so they hold for an idle core even when measured on a busy one. Rounding
(`diagnostics.rounding`) is counted only for the trials at the `masks_at` sparsities.

    python benchmarks/init_cost.py --root /tmp/cifar10-jpeg --models resnet20 --out cost.json
    python benchmarks/init_cost.py --summarise cost.json         # the table, from saved runs
    python benchmarks/init_cost.py --from-run runs/init-cifar10   # what a finished run cost
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from pai_bench.config import load_config
from pai_bench.pages import load_run_records
from pai_bench.publish import run_folder
from pai_bench.plugins import resolve_options
from pai_bench.grid import expand_grid
from pai_bench.trial import load_trial_data, run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="init-cifar10")
    parser.add_argument("--root", default="unused", help="data.root of the suite's dataset")
    parser.add_argument("--models", nargs="*", help="cells to time (default: all)")
    parser.add_argument("--methods", nargs="*", help="methods to time (default: the suite's)")
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of iterative methods actually run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON file, rewritten after each trial")
    parser.add_argument("--summarise", nargs="*", help="print the estimate table of these saved JSON files and stop")
    parser.add_argument("--from-run", default=None, help="print what the done trials of this run folder (or records archive) cost and stop")
    args = parser.parse_args()
    if args.from_run:
        print(run_cost_table(Path(args.from_run)))
        return
    if args.summarise:
        rows = [row for path in args.summarise for row in json.load(open(path))["rows"]]
        print(summary_table(rows, load_config(args.suite, [f"data.root={args.root}"])))
        return
    torch.set_num_threads(args.threads)

    config = load_config(args.suite, [f"data.root={args.root}", "seeds=1", f"sparsities=[{args.sparsity}]"])
    specs = [s for s in expand_grid(config) if (not args.models or s.cell in args.models) and (not args.methods or s.method in args.methods)]
    full = load_config(args.suite, [f"data.root={args.root}"])
    dataset = None
    rows = []
    for spec in specs:
        suite_rounds = spec.options.get("rounds")
        if suite_rounds and suite_rounds > args.rounds:
            spec = _with_rounds(spec, args.rounds)
        dataset = dataset or load_trial_data(spec)
        cpu_started, started = time.process_time(), time.perf_counter()
        record = run_trial(spec, dataset=dataset)
        cpu, wall = time.process_time() - cpu_started, time.perf_counter() - started
        timings = record.get("timings", {})
        ran = spec.options.get("rounds") or 1
        scale = (suite_rounds or 1) / ran
        cell = full.cells[spec.cell] if full.cells else full
        trials = (1 if spec.sparsity == 0.0 else len(full.sparsities)) * full.seeds
        prune_s = timings.get("prune_s", float("nan"))
        extra = sum(timings.get(k, 0.0) for k in ("effective_s", "ntk_s"))
        rounding = timings.get("rounding_s", 0.0) * scale
        estimate = prune_s * scale + extra + rounding + (wall - timings.get("total_s", wall))
        rows.append(
            {
                "cell": spec.cell,
                "method": spec.method,
                "status": record["status"],
                "error": record.get("error"),
                "rounds_run": ran,
                "rounds_suite": suite_rounds or 1,
                "prune_s": prune_s,
                "effective_s": timings.get("effective_s"),
                "ntk_s": timings.get("ntk_s"),
                "rounding_s": timings.get("rounding_s"),
                "trial_wall_s": wall,
                "trial_cpu_s": cpu,
                "estimate_trial_s": estimate,
                "trials_in_suite": trials,
                "estimate_cell_s": estimate * trials,
                "ntk_asked": cell.diagnostics.ntk,
                "rounding_asked": cell.diagnostics.rounding,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump({"threads": args.threads, "sparsity": args.sparsity, "rows": rows}, handle, indent=1)


def run_cost_table(path: Path) -> str:
    """Trials, core-minutes (the sum of each done trial's `timings.total_s`) and seconds per
    trial by cell and row, from the records a run's reports cover."""
    with run_folder(path) as folder:
        records = [r for r in load_run_records(folder) if r.get("status") == "done"]
    frame = pd.DataFrame(
        {"cell": r.get("cell"), "row": r.get("row") or r["method"], "seconds": (r.get("timings") or {}).get("total_s", 0.0)} for r in records
    )
    table = frame.groupby(["cell", "row"])["seconds"].agg(trials="count", core_minutes=lambda s: s.sum() / 60, mean_s="mean", max_s="max")
    table = table.round({"core_minutes": 1, "mean_s": 1, "max_s": 1}).reset_index()
    total = frame["seconds"].sum() / 3600
    return table.to_markdown(index=False) + f"\n\n{len(frame)} done trials, {total:.2f} core-hours"


def idle_seconds(row: dict) -> dict[str, float]:
    """One trial's seconds on an idle core, by part: the wall seconds scaled by CPU / wall, the
    iterative methods' pruning and rounding extrapolated to the suite's rounds."""
    ratio = min(1.0, row["trial_cpu_s"] / row["trial_wall_s"])
    scale = row["rounds_suite"] / row["rounds_run"]
    return {
        "prune": row["prune_s"] * scale * ratio,
        "measure": ((row["effective_s"] or 0.0) + (row["ntk_s"] or 0.0)) * ratio,
        "rounding": (row["rounding_s"] or 0.0) * scale * ratio,
    }


def summary_table(rows: list[dict], config) -> str:
    """Per (cell, method): seconds per trial on an idle core, and the cell's core-hours for the
    suite's sparsities x seeds (rounding only at the masks_at sparsities)."""
    import pandas as pd

    lines = []
    for row in rows:
        cell = config.cells[row["cell"]] if config.cells else config
        parts = idle_seconds(row)
        sparsities = 1 if row["method"] == "dense" else len(config.sparsities)
        at_masks = 1 if row["method"] == "dense" else len(cell.diagnostics.masks_at or config.sparsities)
        total = config.seeds * (sparsities * (parts["prune"] + parts["measure"]) + at_masks * parts["rounding"])
        lines.append(
            {
                "cell": row["cell"],
                "method": row["method"],
                "rounds": f"{row['rounds_run']} of {row['rounds_suite']}",
                "prune s": round(parts["prune"], 1),
                "effective+NTK s": round(parts["measure"], 1),
                "rounding s": round(parts["rounding"], 1),
                "trials": config.seeds * sparsities,
                "cell core-hours": round(total / 3600, 2),
            }
        )
    frame = pd.DataFrame(lines)
    total = frame["cell core-hours"].sum()
    return frame.to_markdown(index=False) + f"\n\ntotal: {total:.2f} core-hours, {total / 2:.2f} h on 2 cores"


def _with_rounds(spec, rounds: int):
    from dataclasses import replace

    options = dict(spec.options, rounds=rounds)
    resolve_options(spec.method, options)  # still valid
    return replace(spec, options=options)


if __name__ == "__main__":
    main()
