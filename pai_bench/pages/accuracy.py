"""The accuracy page: one table per (suite, model, dataset), methods as rows, sparsities as
columns, cells "mean ± std" of test accuracy over seeds. The best method of a column is bold,
the methods not significantly worse than it are marked, the dense model is a reference row, and
failed or diverged trials are counted in their cell. Under each table, the figure tables the
records can fill (`pai_bench.pages.figures`) and a link to the table's per-layer density plot;
then the details of every comparison, the ranking across tables, and the footer
(`pai_bench.pages.footer`). The statistics are `pai_bench.stats`; this module only lays them out.

It writes NAME.md, NAME.png (accuracy against remaining weights), NAME-effective.png, and for
each table whose records have per-layer mask figures, NAME-layers-<table>.png.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date as _date
from pathlib import Path
from typing import Any

import pandas as pd

from pai_bench import stats
from pai_bench.pages.figures import FIGURES, figure_sections
from pai_bench.pages.footer import _footer, _test_sentence
from pai_bench.pages.plots import effective_plot_path, layer_plot_path, plot_layer_densities, plot_leaderboard
from pai_bench.pages.published import published_section
from pai_bench.pages.tables import MARKS, _columns, _fixed, _groups, _interval, _markdown_table, _modal_n, _p, _plural, _references, _row_order, sparsity_label
from pai_bench.stats import Analysis, Cell, Group, RowKey
from pai_bench.version import __version__


def _write_files(
    analysis: Analysis, records, out_md: Path, title: str | None, version: str | None, date: str | None, notes: Sequence[str]
) -> tuple[Path, Path]:
    out_md.parent.mkdir(parents=True, exist_ok=True)
    png = out_md.with_suffix(".png")
    plot_leaderboard(analysis, png, title=title)
    effective_png = plot_leaderboard(analysis, effective_plot_path(out_md), effective=True, title=title)
    layer_plots = {}
    for group, cells in _groups(analysis).items():
        path = layer_plot_path(out_md, group)
        if plot_layer_densities(group, cells, path) is not None:
            layer_plots[group] = path.name
    text = leaderboard_markdown(
        analysis,
        records,
        plot=png.name,
        effective_plot=effective_png.name if effective_png else None,
        layer_plots=layer_plots,
        title=title,
        version=version or __version__,
        date=date or _date.today().isoformat(),
        notes=notes,
    )
    out_md.write_text(text)
    return out_md, png


def leaderboard_markdown(
    analysis: Analysis,
    records: Sequence[Mapping[str, Any]],
    *,
    plot: str | None,
    title: str | None,
    version: str,
    date: str,
    layer_plots: Mapping[Group, str] | None = None,
    effective_plot: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    groups = _groups(analysis)
    suites = sorted({g.suite for g in groups})
    lines = [f"# {title or 'Leaderboard: ' + ', '.join(suites)}", ""]
    lines += [
        "Test accuracy (%), mean ± std over seeds. **Bold**: the best method at that sparsity; "
        "≈: not significantly worse than it; ?: not testable; no mark: significantly worse "
        f"({_test_sentence(analysis)}, Holm-corrected within the column, α = {analysis.alpha:g}).",
        "",
    ]
    if plot:
        lines += [f"![test accuracy against remaining weights]({plot})", ""]
    if effective_plot:
        lines += [
            "The same against *effective* remaining weights (kept weights on a path from input to output; "
            "Vysogorets & Kempe, JMLR 2023), where methods that leave dead weights move left:",
            "",
            f"![test accuracy against effective remaining weights]({effective_plot})",
            "",
        ]
    for group, cells in groups.items():
        lines += _group_section(analysis, group, cells, records, (layer_plots or {}).get(group))
    lines += _ranking_section(analysis)
    lines += _footer(analysis, records, version, date, notes)
    return "\n".join(lines).rstrip() + "\n"


def _accuracy_text(cell: Cell, key: RowKey, modal_n: int, bold: bool = True) -> str:
    row = cell.rows.get(key)
    if row is None:
        return ""
    s = row.summary
    notes = []
    if s.n and s.n != modal_n:
        notes.append(f"n={s.n}")
    notes += [f"{count} {status}" for status, count in sorted(row.unfinished.items())]
    if not s.n:
        text = "–"
    else:
        text = f"{s.mean:.2f} ± {s.std:.2f}" if s.std is not None else f"{s.mean:.2f}"
        if bold and row.verdict == stats.BEST:
            text = f"**{text}**"
        text += MARKS.get(row.verdict, "")
    return text + (f" ({', '.join(notes)})" if notes else "")


def _group_section(analysis: Analysis, group: Group, cells: list[Cell], records, layer_plot: str | None = None) -> list[str]:
    references = _references(cells)
    columns = _columns(cells)
    modal_n = _modal_n(cells)
    lines = [f"## {group.label}", ""]
    table: dict[str, dict[str, str]] = {}
    for ref, key in references:
        text = _accuracy_text(ref, key, modal_n, bold=False)
        table[f"*{key.label} (reference)*"] = {sparsity_label(c.sparsity): text for c in columns} or {sparsity_label(0.0): text}
    for key in _row_order(columns):
        table[key.label] = {sparsity_label(c.sparsity): _accuracy_text(c, key, modal_n) for c in columns}
    lines += [_markdown_table(table, "method"), ""]
    group_records = [r for r in records if stats.record_group(r) == group]
    lines += figure_sections(FIGURES, group_records, references, columns, layer_plot)
    lines += published_section(group_records)
    lines += _details(analysis, columns)
    return lines


def _details(analysis: Analysis, columns: list[Cell]) -> list[str]:
    rows = []
    for cell in columns:
        for key in _row_order([cell]):
            row = cell.rows[key]
            s, c = row.summary, row.comparison
            rows.append(
                {
                    "sparsity": sparsity_label(cell.sparsity),
                    "method": key.label,
                    "n": s.n,
                    "not done": ", ".join(f"{n} {status}" for status, n in sorted(row.unfinished.items())),
                    "mean": _fixed(s.mean),
                    "std": _fixed(s.std),
                    "95 % CI (t)": _interval(s.ci),
                    "95 % CI (bootstrap)": _interval(s.ci_bootstrap),
                    "against": c.against if c else "",
                    "test": c.test or "" if c else "",
                    "p": _p(c.p) if c else "",
                    "p (Holm)": _p(c.p_holm) if c else "",
                    "P(against > row)": _fixed(c.prob_improvement) if c else "",
                    "verdict": (row.verdict or "") + (f" ({c.reason})" if c and c.reason else ""),
                }
            )
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    return [
        "<details><summary>Per-cell statistics and tests</summary>",
        "",
        frame.to_markdown(index=False, disable_numparse=True),
        "",
        "</details>",
        "",
    ]


def _ranking_section(analysis: Analysis) -> list[str]:
    ranking = analysis.ranking
    if not ranking.methods:
        return []
    lines = ["## Across columns", ""]
    if ranking.cells:
        frame = pd.DataFrame(
            {
                "method": list(ranking.methods),
                "mean rank": [f"{ranking.mean_rank[m]:.2f}" for m in ranking.methods],
                "IQM of normalised accuracy (%)": [f"{ranking.iqm[m]:.2f}" if m in ranking.iqm else "" for m in ranking.methods],
            }
        ).sort_values(["mean rank", "method"], key=lambda s: s.astype(float) if s.name == "mean rank" else s)
        lines += [frame.to_markdown(index=False, disable_numparse=True), ""]
    if ranking.friedman_p is not None:
        friedman = f"Friedman test: χ² = {ranking.friedman_statistic:.2f}, p = {_p(ranking.friedman_p)}"
    else:
        friedman = f"Friedman test: not testable ({ranking.reason})"
    if ranking.friedman_floor is not None:
        friedman += (
            f" (chi-square approximation; with {ranking.cells} columns and {len(ranking.methods)} methods the smallest p "
            f"it can give is {_p(ranking.friedman_floor)})"
        )
    lines += [
        f"Over the {_plural(ranking.cells, 'table column')} (one model, dataset and sparsity each; a suite's cells are its tables) that hold all {len(ranking.methods)} methods: "
        f"rank 1 is the best mean of a column (ties share their mean rank); the interquartile mean (IQM, the mean of the "
        f"middle 50 % of per-seed scores, as rliable) is of accuracy as a percentage of {ranking.normalised_by}. "
        f"{friedman}.",
        "",
    ]
    return lines
