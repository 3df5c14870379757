"""Figures beside the accuracy: per-trial numbers (effective sparsity, speed-up, layer
collapse, tie-breaks, diagnostics such as the NTK at initialisation) shown as their own methods x
sparsities tables where records have them, and the warnings raised while pruning. Shared by the
accuracy page and the init page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pai_bench import stats
from pai_bench.pages.tables import _markdown_table, _number, _plural, _row_order, sparsity_label
from pai_bench.stats import Cell, RowKey


@dataclass(frozen=True)
class Figure:
    """A per-trial number shown as its own methods x sparsities table, where records have it.

    `aggregate` over a row's seeds: "mean", or "max" for counts where the worst seed matters.
    `only_if_nonzero` hides a table of zeros (and the footer says so instead).
    """

    title: str
    value: Callable[[Mapping[str, Any]], float | None]
    aggregate: str = "mean"
    fmt: str = "{:.3g}"
    reference: bool = False  # show the dense reference row too
    only_if_nonzero: bool = False
    absent: str = ""  # said instead of a hidden table of zeros


def empty_layers(record: Mapping[str, Any]) -> float | None:
    """Layers left with no weight, hence no live output unit (`alive_outputs == 0`): from the
    record's per-layer stats, else its `collapsed_layers` count. None when neither is there."""
    masks = record.get("masks") or {}
    layers = masks.get("layers")
    if layers:
        return float(sum(1 for layer in layers if layer.get("kept") == 0 or layer.get("alive_outputs") == 0))
    collapsed = masks.get("collapsed_layers")
    return None if collapsed is None else float(collapsed)


def tie_break_share(record: Mapping[str, Any]) -> float | None:
    """The share of a round's kept weights the driver's tie-break chose (worst round), 0 for
    masks chosen wholly by their scores; None for a record without per-layer masks."""
    masks = record.get("masks") or {}
    if not masks.get("layers"):
        return None
    return float((masks.get("tie_break") or {}).get("share", 0.0))


def effective_sparsity_percent(record: Mapping[str, Any]) -> float | None:
    """The trial's effective sparsity (`pai_bench.effective`) in percent, None if not recorded."""
    value = _number(record.get("sparsity_effective"))
    return None if value is None else 100.0 * value


FIGURES: list[Figure] = [
    Figure(
        "effective sparsity (%): weights removed or on no path from input to output, mean over seeds",
        effective_sparsity_percent,
        fmt="{:.6g}",
    ),
    Figure(
        "theoretical speed-up (MACs of the dense model / MACs), mean over seeds",
        lambda r: _number(r.get("speedup")),
        fmt="{:.3g}×",
    ),
    Figure(
        "layer collapse: layers with no weight kept or no output unit alive (output width 0), max over seeds",
        empty_layers,
        aggregate="max",
        fmt="{:.0f}",
        only_if_nonzero=True,
        absent="No trial has an empty layer.",
    ),
    Figure(
        "kept weights chosen by the tie-break, not by their scores (share of the round's mask, worst round), max over seeds",
        tie_break_share,
        aggregate="max",
        fmt="{:.1%}",
        only_if_nonzero=True,
        absent="Every kept weight was ranked by its score.",
    ),
]


#: Titles of the diagnostics pai-bench records (`pai_bench.trial`, `diagnostics.ntk=true`); any
#: other numeric key gets a table titled by its name.
DIAGNOSTIC_TITLES = {
    "ntk_trace_ratio": "NTK trace at initialisation, pruned / dense (empirical NTK on a small batch), mean over seeds",
    "ntk_top_eigenvalue_ratio": "NTK top eigenvalue at initialisation, pruned / dense, mean over seeds",
    "rounding_jaccard_dtype": "rounding: Jaccard index of the mask with the one from scores in the other precision (float32 / float64), mean over seeds",
    "rounding_jaccard_order": "rounding: Jaccard index of the mask with the one from the pruning examples in another order, mean over seeds",
}


def diagnostic_figures(records: Iterable[Mapping[str, Any]]) -> list[Figure]:
    """One figure per numeric key of the records' `diagnostics` (e.g. NTK figures)."""
    found = {k for r in records for k, v in (r.get("diagnostics") or {}).items() if _number(v) is not None}
    names = [name for name in DIAGNOSTIC_TITLES if name in found] + sorted(found - DIAGNOSTIC_TITLES.keys())
    return [
        Figure(
            DIAGNOSTIC_TITLES.get(name, f"diagnostics: {name}, mean over seeds"),
            lambda r, n=name: _number((r.get("diagnostics") or {}).get(n)),
            reference=True,
        )
        for name in names
    ]


def figure_sections(
    figures: Sequence[Figure], records: Sequence[Mapping[str, Any]], references: list[tuple[Cell, RowKey]], columns: list[Cell], layer_plot: str | None
) -> list[str]:
    """A table's figure tables (and the records' numeric diagnostics), a sentence for each
    figure the records hold none of, the pruning warnings and the per-layer density plot."""
    lines, hidden = [], []
    for figure in list(figures) + diagnostic_figures(records):
        rendered = _figure_table(figure, references, columns)
        if rendered is not None:
            lines += [f"{figure.title[0].upper()}{figure.title[1:]}:", "", rendered, ""]
        elif figure.absent and any(figure.value(r) is not None for r in records):
            hidden.append(figure.absent)
    if hidden:
        lines += [" ".join(hidden), ""]
    lines += _warning_lines(records)
    if layer_plot:
        lines += [f"![per-layer density of each method at each sparsity]({layer_plot})", ""]
    return lines


def _warning_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The warnings recorded while pruning, one line per method and kind of warning (the
    message with its numbers blanked), quoting the first trial's message."""
    kinds: dict[tuple[str, str], list[str]] = {}
    for record in records:
        for text in record.get("warnings") or []:
            kind = re.sub(r"\d[\d.,]*(e[+-]?\d+)?", "#", text)
            kinds.setdefault((stats.record_row(record).label, kind), []).append(text)
    if not kinds:
        return []
    lines = ["Warnings raised while pruning:", ""]
    for (label, _), texts in sorted(kinds.items()):
        lines.append(f"- **{label}**, {_plural(len(texts), 'trial')}: {_link_findings(texts[0])}")
    return lines + [""]


#: Where a page under docs/findings/ is, seen from leaderboard/, where published leaderboards
#: live (DESIGN.md); elsewhere the link's text still names the page in pai-bench's source.
FINDINGS_LINK = "../docs/findings/"


def _link_findings(text: str) -> str:
    """A warning's mention of a finding (`docs/findings/px-batchnorm.md`, which explains PX's
    warning) as a link to it."""
    return re.sub(r"docs/findings/([\w.-]+\.md)", lambda m: f"[{m[0]}]({FINDINGS_LINK}{m[1]})", text)


def _figure_table(figure: Figure, references: list[tuple[Cell, RowKey]], columns: list[Cell]) -> str | None:
    def aggregate(cell: Cell, key: RowKey) -> float | None:
        row = cell.rows.get(key)
        values = [v for r in (row.records if row else []) if r.get("status") == "done" for v in [figure.value(r)] if v is not None]
        if not values:
            return None
        return max(values) if figure.aggregate == "max" else sum(values) / len(values)

    table: dict[str, dict[str, str]] = {}
    found = []
    if figure.reference:
        for ref, key in references:
            value = aggregate(ref, key)
            if value is not None:
                found.append(value)
                text = figure.fmt.format(value)
                table[f"*{key.label} (reference)*"] = {sparsity_label(c.sparsity): text for c in columns} or {sparsity_label(0.0): text}
    for key in _row_order(columns):
        values = [(c, aggregate(c, key)) for c in columns]
        found += [v for _, v in values if v is not None]
        table[key.label] = {sparsity_label(c.sparsity): ("" if v is None else figure.fmt.format(v)) for c, v in values}
    if not found or (figure.only_if_nonzero and not any(found)):
        return None
    return _markdown_table(table, "method")
