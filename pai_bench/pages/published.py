"""The published numbers beside an accuracy table: for each sparsity a published source covers
(`pai_bench.references`), the run's mean of every row beside the source's number for the same
method, and how the two rankings agree.

Why the order and not the numbers: a short run, a lossy re-encoding of the data or a best-epoch
report each move every number; a method's place among the others is what a short protocol can
hope to keep. Kendall's tau says how far it did, and the tau between the run's own seeds, over
the same methods, says how far it could.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from pai_bench.pages.tables import _markdown_table, sparsity_label
from pai_bench.references import CellComparison, Source, compare_with_published, load_references, row_name


def published_section(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines for one table's records; none where no source covers them."""
    comparisons = compare_with_published(records)
    if not comparisons:
        return []
    references = load_references()
    dataset = comparisons[0].dataset
    lines = [
        "### Beside the published numbers (full protocol)",
        "",
        "Each source's number for the same model, data set and sparsity (sources below). They come from "
        "another protocol (160 epochs in each paper), and this table's may be a short one: compare the order "
        "of the methods, not the numbers. τ: Kendall's tau between this table's ranking (means over seeds) and "
        "the source's, over the methods both have (p: its test that the two orders are unrelated); seeds τ: the "
        "mean tau between two of this run's seeds over the same methods, how far its own order holds.",
        "",
    ]
    note = references.datasets.get(dataset, {}).get("note")
    if references.compares_with(dataset) != dataset and note:
        lines += [f"The data here are {note}.", ""]
    used: dict[str, Source] = {}
    for cell in comparisons:
        lines += _cell_lines(cell, records)
        used.update({source.source.name: source.source for source in cell.sources})
    lines += ["Sources:", ""]
    lines += [f"- **{name}**: {source.cite}; {source.where}. {_kind(source)}. Protocol: {source.protocol}." for name, source in sorted(used.items())]
    return lines + [""]


def _cell_lines(cell: CellComparison, records: Sequence[Mapping[str, Any]]) -> list[str]:
    ours = _ours(cell, records)
    methods = sorted(set(ours) | {m for source in cell.sources for m in source.published}, key=lambda m: (m not in ours, m))
    table = {}
    for method in methods:
        row = {"this run": ours.get(method, "")}
        for source in cell.sources:
            value = source.published.get(method, "")
            row[source.source.name] = "" if value == "" else ("off the plot" if value is None else f"{value:.2f}")
        table[method] = row
    lines = [f"**{sparsity_label(cell.sparsity)}**", "", _markdown_table(table, "method"), ""]
    for source in cell.sources:
        agreement = source.agreement
        if agreement.tau is None:
            lines.append(f"- {source.source.name}: fewer than three methods in common ({', '.join(agreement.methods) or 'none'}), no τ.")
            continue
        seeds = "n/a (one seed)" if source.seed_agreement is None else f"{source.seed_agreement:+.2f}"
        lines.append(
            f"- {source.source.name}: τ = {agreement.tau:+.2f} (p = {agreement.p_value:.2f}) over {len(agreement.methods)} methods "
            f"({', '.join(agreement.methods)}); seeds τ = {seeds}."
        )
    return lines + [""]


def _ours(cell: CellComparison, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Mean ± std (n) of each row's finished trials in the cell."""
    by_row: dict[str, list[float]] = {}
    for record in records:
        if (
            record.get("status") == "done"
            and record.get("test_acc") is not None
            and not record.get("ablation")
            and (record.get("model"), record.get("dataset")) == (cell.model, cell.dataset)
            and float(record["sparsity"]) == cell.sparsity
        ):
            by_row.setdefault(row_name(record), []).append(float(record["test_acc"]))
    text = {}
    for row, values in by_row.items():
        mean = statistics.mean(values)
        text[row] = f"{mean:.2f} ± {statistics.stdev(values):.2f} (n={len(values)})" if len(values) > 1 else f"{mean:.2f} (n=1)"
    return text


def _kind(source: Source) -> str:
    if source.kind == "plot-read":
        kind = f"read off a plot (± {source.uncertainty:g})"
    else:
        kind = {"exact": "exact values", "printed-label": "labels printed on a figure"}[source.kind]
    value = {"best-epoch": "best epoch", "last-epoch": "last epoch", "unstated": "last or best epoch not stated"}[source.value]
    seeds = f", {source.seeds} seeds" if source.seeds else ""
    return f"{kind}, {value}{seeds}"
