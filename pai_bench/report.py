"""Tables of a run's records: one row per trial, and a methods x sparsities summary."""

from __future__ import annotations

import pandas as pd

from pai_bench.ablations import row_label
from pai_bench.stats import is_prune_only, record_row_name
from pai_bench.variants import option_text

#: The leading columns of `pai-bench results`, in order; other fields follow. `method` is the
#: registered method that ran, `row` the suite's row (the method, or a variant's name).
#: sparsity_effective: the share of weights on no path from input to output once pruned
#: (`pai_bench.effective`), at least the nominal sparsity.
LEADING = ["key", "method", "sparsity", "seed", "status", "test_acc", "sparsity_effective", "row"]
FORMATS = ("csv", "md", "json")
#: Compute and size figures of each trial (`pai_bench.flops.trial_figures`), after the leading columns.
SIZE_COLUMNS = ["sparsity_prunable", "compression", "macs", "macs_dense", "speedup", "params", "params_dense"]
COUNT_COLUMNS = ["macs", "macs_dense", "params", "params_dense", "effective_kept", "effective_collapsed_layers"]


def results_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for record in records:
        masks = record.get("masks", {})
        timings = record.get("timings", {})
        budget = record.get("train_budget", {})
        rows.append(
            {
                "key": record["key"],
                "method": record.get("method"),
                "sparsity": record.get("sparsity"),
                "seed": record.get("seed"),
                "status": record.get("status"),
                "test_acc": record.get("test_acc"),
                "sparsity_effective": record.get("sparsity_effective"),
                "row": record_row_name(record),
                **{column: record.get(column) for column in SIZE_COLUMNS},
                "budget": budget.get("ratio"),
                # the training a trajectory method's (imp's) mask took before the trial's own
                "mask_train_epochs": record.get("mask_train_epochs"),
                "ablation": record.get("ablation"),
                "options": option_text(record.get("options") or {}),
                "suite": record.get("suite"),
                "cell": record.get("cell"),
                "model": record.get("model"),
                "dataset": record.get("dataset"),
                "kept": masks.get("kept"),
                "total": masks.get("total"),
                "collapsed_layers": masks.get("collapsed_layers"),
                "effective_kept": masks.get("effective_kept"),
                "effective_collapsed_layers": masks.get("effective_collapsed_layers"),
                "epochs": len(record.get("epochs", [])),
                "prune_s": timings.get("prune_s"),
                "train_s": timings.get("train_s"),
                "error": record.get("error"),
                "prune_only": is_prune_only(record),
            }
        )
    frame = pd.DataFrame(rows, columns=LEADING + [c for c in (rows[0] if rows else {}) if c not in LEADING])
    # Counts stay whole numbers beside missing ones (a failed trial has none), not 4e+06.
    frame = frame.astype({column: "Int64" for column in COUNT_COLUMNS if column in frame})
    return frame.sort_values(["method", "row", "sparsity", "seed"], kind="stable").reset_index(drop=True)


def format_results(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame.to_json(orient="records", indent=1)
    return frame.to_markdown(index=False, floatfmt=".4g")


def summary_markdown(frame: pd.DataFrame) -> str:
    """Mean ± std of test accuracy over seeds, rows (methods and variants) by sparsities; one table
    per cell of a suite with cells (a transfer suite's datasets are never averaged together).

    Unfinished trials are counted beside each cell, never silently dropped. A prune-only run
    (no trial has an accuracy) shows the effective sparsity (%) instead, and says so.
    """
    if frame.empty:
        return "(no trials)\n"
    column, digits, note = "test_acc", 2, "test accuracy (%), mean ± std over seeds\n\n"
    if frame["prune_only"].all():
        # Four decimals: at 99.95 and 99.99 % two would print 99.99 or 100.00 for every method.
        column, digits, note = "sparsity_effective", 4, "Prune only, no accuracy: effective sparsity (%), mean ± std over seeds.\n\n"
        frame = frame.assign(sparsity_effective=100 * frame["sparsity_effective"].astype(float))
    if "cell" in frame and frame["cell"].notna().any():
        named = frame["cell"].fillna("(no cell)")
        return note + "\n".join(f"## {cell}\n\n" + _summary_table(group, column, digits) for cell, group in frame.groupby(named, sort=True))
    return note + _summary_table(frame, column, digits)


def _summary_table(frame: pd.DataFrame, column: str = "test_acc", digits: int = 2) -> str:
    cells: dict[str, dict[str, str]] = {}
    # An ablated trial (`snip (shuffled)`) is a row of its own, never averaged with its method.
    ablation = frame["ablation"] if "ablation" in frame else pd.Series(None, index=frame.index)
    names = frame["row"] if "row" in frame else frame["method"]
    rows = [row_label(m, a if isinstance(a, str) else None) for m, a in zip(names, ablation)]
    for (method, sparsity), group in frame.groupby([pd.Series(rows, index=frame.index, name="method"), "sparsity"], sort=True):
        done = group[group["status"] == "done"][column].astype(float)
        if len(done) > 1:
            text = f"{done.mean():.{digits}f} ± {done.std(ddof=1):.{digits}f} (n={len(done)})"
        else:  # one seed has no spread to show: "± 0.00" would claim one
            text = f"{done.iloc[0]:.{digits}f} (n=1)" if len(done) else "–"
        others = group[group["status"] != "done"]["status"].value_counts()
        if len(others):
            text += " " + ", ".join(f"{count} {status}" for status, count in others.items())
        cells.setdefault(method, {})[f"{100 * sparsity:g} %"] = text
    table = pd.DataFrame.from_dict(cells, orient="index")
    table = table[sorted(table.columns, key=lambda c: float(c.split()[0]))].fillna("")
    table.index.name = "method"
    return table.to_markdown() + "\n"
