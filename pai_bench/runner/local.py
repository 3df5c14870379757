"""The in-process executor: trials one after another, for debugging and CPU runs.

It knows nothing about pruning: it takes trial specs, skips the finished ones, runs the rest
through `run_trial`, and writes each record as soon as it exists.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence

from tqdm import tqdm

from pai_bench.data import Dataset
from pai_bench.store import ResultStore
from pai_bench.trial import TrialSpec, base_record, data_key, run_trial


def run_local(specs: Sequence[TrialSpec], store: ResultStore, datasets: Mapping[tuple, Dataset], progress: bool = True) -> Counter:
    """Run the unfinished trials of `specs` on the preloaded `datasets` (by `data_key`);
    return how many ended in each status."""
    counts: Counter = Counter()
    todo = []
    for spec in specs:
        if store.is_final(spec.key):
            counts["skipped"] += 1
        else:
            todo.append(spec)
    bar = tqdm(total=len(todo), unit="trial", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for spec in todo:
            bar.set_description(f"{spec.method} s={spec.sparsity:g} seed={spec.seed}")
            store.write(base_record(spec, "running"))
            record = run_trial(spec, dataset=datasets[data_key(spec)])
            store.write(record)
            counts[record["status"]] += 1
            if record["status"] == "failed":
                bar.write(f"trial {spec.key} ({spec.method}, s={spec.sparsity:g}, seed={spec.seed}) failed: {record['error']}")
            bar.set_postfix({status: counts[status] for status in ("done", "failed", "diverged") if counts[status]})
            bar.update()
    finally:
        bar.close()
    return counts

