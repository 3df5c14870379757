"""The plots beside a page (matplotlib, Agg canvas, no pyplot): accuracy against remaining
weights (and against effective remaining weights), the per-layer density of each method at each
sparsity, and the panel helpers the init page's plots use too."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pai_bench.pages.figures import effective_sparsity_percent
from pai_bench.pages.tables import _columns, _groups, _number, _references, _row_order, sparsity_label
from pai_bench.stats import Analysis, Cell, Group, RowKey


def effective_plot_path(out_md: str | Path) -> Path:
    """Where `write_leaderboard` puts the plot against effective remaining weights."""
    out_md = Path(out_md)
    return out_md.with_name(f"{out_md.stem}-effective.png")


def _remaining(cell: Cell, key: RowKey, effective: bool) -> float | None:
    """A row's remaining weights (%) in a cell: nominal, or the mean effective over its done trials."""
    if not effective:
        return 100 * (1 - cell.sparsity)
    values = [v for r in cell.rows[key].records if r.get("status") == "done" for v in [effective_sparsity_percent(r)] if v is not None]
    return 100.0 - sum(values) / len(values) if values else None


def plot_leaderboard(analysis: Analysis, path: str | Path, effective: bool = False, title: str | None = None) -> Path | None:
    """Accuracy against remaining weights (log scale, sparsity growing to the right), error
    bars one std over seeds; one panel per (suite, model, dataset); dense as a band; `title`
    over the panels, as over the Markdown page.

    `effective`: against each row's mean effective remaining weights instead (None, and no
    file, when no record has them)."""
    from matplotlib.figure import Figure as MplFigure  # no pyplot: no global backend state, Agg canvas
    from matplotlib.ticker import NullFormatter

    groups = _groups(analysis)
    if effective and not any(effective_sparsity_percent(r) is not None for c in analysis.cells.values() for row in c.rows.values() for r in row.records):
        return None
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    figure = MplFigure(figsize=(5.5 * columns, 4.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (group, cells) in zip(axes, groups.items()):
        competing = _columns(cells)
        remaining = [100 * (1 - c.sparsity) for c in competing]
        for ref, key in _references(cells):
            summary = ref.rows[key].summary
            if summary.n:
                mean, std = summary.mean, summary.std or 0.0
                ax.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"{key.label} (reference)")
                ax.axhspan(mean - std, mean + std, color="black", alpha=0.08)
        for key in _row_order(competing):
            points = [
                (x, c.rows[key].summary)
                for c in competing
                if key in c.rows and c.rows[key].summary.n
                for x in [_remaining(c, key, effective)]
                if x is not None and x > 0
            ]
            if not points:
                continue
            x = [p[0] for p in points]
            y = [p[1].mean for p in points]
            err = [p[1].std or 0.0 for p in points]
            ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=3, linestyle=":" if key.ablation else "-", label=key.label)
        ax.set_xscale("log")
        if effective:
            ax.invert_xaxis()  # fewer weights to the right
        elif remaining and min(remaining) > 0:
            ax.set_xlim(max(remaining) * 1.3, min(remaining) / 1.3)  # fewer weights to the right
            ax.set_xticks(remaining, labels=[f"{r:.3g}" for r in remaining])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{'effective ' if effective else ''}remaining weights (%), log scale")
        ax.set_ylabel("test accuracy (%), mean ± std over seeds")
        finish_panel(ax, group.label)
    return save_panels(figure, axes, len(groups), path, title)


def finish_panel(ax, label: str) -> None:
    ax.set_title(label)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def save_panels(figure, axes, used: int, path: str | Path, title: str | None = None) -> Path:
    """Hide a panel grid's unused panels and write the figure, with no metadata that would
    change a byte between two runs on the same records."""
    for ax in axes[used:]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=120, metadata={"Software": None})
    return path


def layer_plot_path(out_md: str | Path, group: Group) -> Path:
    """Where `write_leaderboard` puts a table's per-layer density plot: beside the Markdown."""
    where = [group.suite, group.cell, group.model, group.dataset]
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", "-".join(str(part) for part in where if part)).strip("-")
    out_md = Path(out_md)
    return out_md.with_name(f"{out_md.stem}-layers-{slug}.png")


def layer_densities(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[float, bool]]:
    """Per layer, in layer order: its mean density over the records that carry per-layer mask
    figures (any status: the mask is chosen before training), and whether any of them left it
    with no weight."""
    found: dict[str, list[float]] = {}
    for record in records:
        for layer in (record.get("masks") or {}).get("layers") or []:
            density = _number(layer.get("density"))
            if density is not None and layer.get("name") is not None:
                found.setdefault(str(layer["name"]), []).append(density)
    return {name: (sum(values) / len(values), min(values) <= 0) for name, values in found.items()}


def layer_density_panels(cells: Sequence[Cell]) -> list[tuple[float, dict[str, dict[str, tuple[float, bool]]]]]:
    """What the per-layer density plot draws: per sparsity column, each row's `layer_densities`.

    An ablation whose layer densities are its method's (shuffle, reinit: the same counts per
    layer) is left out, as its line would hide under its method's.
    """
    panels = []
    for cell in _columns(cells):
        lines = {}
        for key in _row_order([cell]):
            densities = layer_densities(cell.rows[key].records)
            base = cell.rows.get(key.base)
            if key.ablation and base is not None and _same_densities(densities, layer_densities(base.records)):
                continue
            if densities:
                lines[key.label] = densities
        if lines:
            panels.append((cell.sparsity, lines))
    return panels


def plot_layer_densities(group: Group, cells: Sequence[Cell], path: str | Path) -> Path | None:
    """Per-layer density of every method, one panel per sparsity (layers on the x axis in
    network order, mean density over seeds on a log scale; ×: a layer some seed left with no
    weight, on the floor when every seed did). None, and no file, when no record of the table
    has per-layer figures.
    """
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.lines import Line2D

    panels = layer_density_panels(cells)
    if not panels:
        return None
    layers: dict[str, None] = {}  # every layer name, in order of first appearance
    for _, lines in panels:
        for densities in lines.values():
            layers.update(dict.fromkeys(densities))
    names = list(layers)
    positive = [d for _, lines in panels for densities in lines.values() for d, _ in densities.values() if d > 0]
    floor = min(positive, default=1.0) / 3
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    width = max(5.5, min(0.18 * len(names) + 2.5, 14.0))
    figure = MplFigure(figsize=(width * ncols + 3, 4.2 * nrows + 0.5), layout="constrained")  # + the legend
    axes = figure.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    colours: dict[str, Any] = {}
    every = max(1, math.ceil(len(names) / 40))  # at most ~40 layer names on an axis
    for ax, (sparsity, lines) in zip(axes, panels):
        for label, densities in lines.items():
            x = [i for i, name in enumerate(names) if name in densities]
            y = [max(densities[names[i]][0], floor) for i in x]
            line = ax.plot(x, y, marker="o", markersize=3, linewidth=1, label=label, color=colours.get(label))
            colours.setdefault(label, line[0].get_color())
            empty = [(i, v) for i, v in zip(x, y) if densities[names[i]][1]]
            if empty:
                ax.plot(*zip(*empty), linestyle="none", marker="x", markersize=8, color=colours[label])
        ax.set_yscale("log")
        ax.set_ylim(floor / 1.5, 1.5)
        ax.axhline(1 - sparsity, color="black", linestyle="--", linewidth=0.8, label="overall density" if ax is axes[0] else None)
        ax.set_xticks(range(0, len(names), every), labels=names[::every], rotation=90, fontsize="x-small")
        ax.set_xlabel("layer (network order)")
        ax.set_ylabel("density (kept / weights), log scale")
        ax.set_title(f"{sparsity_label(sparsity)} sparsity", fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes[: len(panels)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    handles["no weight kept in some seed"] = Line2D([], [], color="grey", marker="x", linestyle="none", markersize=8)
    figure.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small")
    figure.suptitle(f"{group.label}\nper-layer density, mean over seeds")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    path = Path(path)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    return path


def _same_densities(a: Mapping[str, tuple[float, bool]], b: Mapping[str, tuple[float, bool]]) -> bool:
    return bool(a) and a.keys() == b.keys() and all(abs(a[name][0] - b[name][0]) <= 1e-12 and a[name][1] == b[name][1] for name in a)
