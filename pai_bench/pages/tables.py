"""How a page lays records out in tables: groups of cells (one table per suite, model and
dataset), the order of its rows, its sparsity columns, and the text of numbers, p-values and
seed ranges, shared by the accuracy page and the init page."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from pai_bench import stats
from pai_bench.stats import Analysis, Cell, Group, RowKey

#: How a cell's verdict reads in the table; the legend in the footer says the same.
MARKS = {
    stats.TIED: " ≈",
    stats.SAME: " ≈",
    stats.NOT_TESTABLE: " ?",
    stats.LOWER: " ▼",
    stats.HIGHER: " ▲",
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _groups(analysis: Analysis) -> dict[Group, list[Cell]]:
    groups: dict[Group, list[Cell]] = {}
    for cell in sorted(analysis.cells.values(), key=lambda c: (c.group.sort_key(), c.sparsity)):
        groups.setdefault(cell.group, []).append(cell)
    return groups


def sparsity_label(sparsity: float) -> str:
    return f"{100 * sparsity:.6g} %"


def _row_order(cells: Sequence[Cell]) -> list[RowKey]:
    """Competitors by mean rank over the group's columns (then name), each followed by its
    ablations; rows present only as ablations last."""
    ranks: dict[RowKey, list[float]] = {}
    for cell in cells:
        competitors = sorted(cell.competitors, key=lambda k: -cell.rows[k].summary.mean)
        for rank, key in enumerate(competitors, 1):
            ranks.setdefault(key, []).append(rank)
    keys = {k for c in cells for k, row in c.rows.items() if not row.reference}
    bases = sorted({k.base for k in keys}, key=lambda k: (sum(ranks.get(k, [math.inf])) / len(ranks.get(k, [1])), k.method))
    order = []
    for base in bases:
        if base in keys:
            order.append(base)
        order += sorted((k for k in keys if k.ablation and k.base == base), key=lambda k: k.label)
    return order


def _modal_n(cells: Sequence[Cell]) -> int:
    counts = Counter(row.summary.n for c in cells for row in c.rows.values() if row.summary.n)
    return counts.most_common(1)[0][0] if counts else 0


def _references(cells: Sequence[Cell]) -> list[tuple[Cell, RowKey]]:
    """The dense reference rows of a group, wherever they sit."""
    return [(c, k) for c in cells for k in sorted(c.rows, key=lambda k: k.label) if c.rows[k].reference]


def _columns(cells: Sequence[Cell]) -> list[Cell]:
    """The cells with rows other than the reference: the table's sparsity columns."""
    return [c for c in cells if not c.reference]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _markdown_table(table: dict[str, dict[str, str]], index_name: str) -> str:
    frame = pd.DataFrame.from_dict(table, orient="index").fillna("")
    frame.index.name = index_name
    return frame.to_markdown(disable_numparse=True)


def _fixed(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.3g}" if p >= 0.001 else f"{p:.1e}"


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 4] -> "0–2, 4"."""
    if not values:
        return "none"
    spans = [[values[0], values[0]]]
    for value in values[1:]:
        if value == spans[-1][1] + 1:
            spans[-1][1] = value
        else:
            spans.append([value, value])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)
