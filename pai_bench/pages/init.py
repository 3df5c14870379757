"""The init page: the leaderboard of a prune-only suite (`train.epochs=0`): the masks at initialisation.

No accuracy: what separates the methods before training. Per table (suite, model, dataset):
effective sparsity (kept weights on no input-output path count as removed), layers left with
no effective weight, pruning seconds, the NTK and rounding diagnostics where recorded, and the
per-layer density plot. Across tables: the collapse point (the largest sparsity of the grid at
which every seed keeps every layer connected) and how alike the methods' masks are (the
Jaccard index of their kept sets on the same seed, from the masks the records carry,
`pai_bench.maskbits`).

`write_init_leaderboard(records, "leaderboard/NAME.md")` writes NAME.md, NAME.png (effective
against nominal remaining weights), NAME-similarity.png (the Jaccard heatmaps) and the
per-layer density plots.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pai_bench import stats
from pai_bench.machine import machines_line
from pai_bench.maskbits import decode_masks, flat_mask, jaccard_flat
from pai_bench.pages.figures import Figure, effective_sparsity_percent, figure_sections
from pai_bench.pages.footer import _protocol, _versions
from pai_bench.pages.plots import finish_panel, layer_plot_path, plot_layer_densities, save_panels
from pai_bench.pages.tables import _columns, _groups, _markdown_table, _number, _ranges, _references, sparsity_label
from pai_bench.stats import Cell, Group, RowKey

#: The similarity tables show at most this many sparsities (spread over those with masks), so a
#: suite that keeps every mask still gives a page one can read.
MAX_SIMILARITY_SPARSITIES = 4


ROUNDING_TITLES = {
    "rounding_jaccard_dtype": "Jaccard with the mask from scores in the other precision",
    "rounding_jaccard_order": "Jaccard with the mask from the pruning split in another order",
}


def _done(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("status") == "done"]


def _effective_share(record: Mapping[str, Any]) -> float | None:
    masks = record.get("masks") or {}
    kept, effective = _number(masks.get("kept")), _number(masks.get("effective_kept"))
    return None if not kept or effective is None else 100.0 * effective / kept


def effective_collapsed(record: Mapping[str, Any]) -> float | None:
    """Layers with no effective weight: cut off from the input or from the output."""
    layers = (record.get("masks") or {}).get("layers")
    if not layers or any("effective" not in layer for layer in layers):
        return None
    return float(sum(1 for layer in layers if layer["effective"] == 0))


def _prune_seconds(record: Mapping[str, Any]) -> float | None:
    return _number((record.get("timings") or {}).get("prune_s"))


INIT_FIGURES: list[Figure] = [
    Figure(
        "effective sparsity (%): the share of weights removed or on no path from input to output, mean over seeds",
        effective_sparsity_percent,
        fmt="{:.6g}",
    ),
    Figure("kept weights that are effective (%), mean over seeds", _effective_share, fmt="{:.4g}"),
    Figure(
        "layers collapsed: layers with no effective weight (cut off from the input or the output), max over seeds",
        effective_collapsed,
        aggregate="max",
        fmt="{:.0f}",
        only_if_nonzero=True,
        absent="No trial leaves a layer without an effective weight.",
    ),
    Figure("pruning seconds (the method's scoring and selection, all rounds), mean over seeds", _prune_seconds, fmt="{:.3g}"),
]


def collapse_point(records: Sequence[Mapping[str, Any]]) -> float | None:
    """The largest sparsity of the records' grid at which every done seed keeps every layer
    connected (effective density > 0 in each layer); None when no sparsity does."""
    by_sparsity: dict[float, list[float]] = {}
    for record in _done(records):
        collapsed = effective_collapsed(record)
        if collapsed is not None:
            by_sparsity.setdefault(float(record.get("sparsity") or 0.0), []).append(collapsed)
    connected = [s for s, values in by_sparsity.items() if values and not any(values)]
    return max(connected) if connected else None


def collapse_point_table(groups: Mapping[Group, Sequence[Cell]]) -> str | None:
    """Methods as rows, tables (models) as columns: each method's collapse point."""
    table: dict[str, dict[str, str]] = {}
    for group, cells in groups.items():
        every = {float(c.sparsity) for c in cells if c.sparsity}
        for key in _mask_rows(cells):
            records = [r for c in cells if key in c.rows for r in c.rows[key].records]
            if not any(effective_collapsed(r) is not None for r in _done(records)):
                continue
            point = collapse_point(records)
            shown = sparsity_label(point) if point is not None else "none"
            ran = sorted({float(r["sparsity"]) for r in _done(records)})
            if set(ran) < every:  # a row cut to fewer sparsities: its point is among those only
                shown += f" (of {', '.join(sparsity_label(s) for s in ran)})"
            table.setdefault(key.label, {})[_short(group)] = shown
    if not table:
        return None
    return _markdown_table(dict(sorted(table.items())), "method")


def similarity(cells: Sequence[Cell]) -> dict[float, pd.DataFrame]:
    """Per sparsity with masks of at least two methods: the methods' mean Jaccard index over the
    seeds both have (a symmetric frame, 1 on the diagonal)."""
    out = {}
    for cell in cells:
        masks: dict[RowKey, dict[int, np.ndarray]] = {}
        for key in _mask_rows([cell]):
            for record in _done(cell.rows[key].records):
                if record.get("mask"):
                    masks.setdefault(key, {})[int(record.get("seed", 0))] = flat_mask(decode_masks(record["mask"]))
        keys = sorted(masks, key=lambda k: k.label)
        if len(keys) < 2:
            continue
        frame = pd.DataFrame(np.nan, index=[k.label for k in keys], columns=[k.label for k in keys])
        for a, b in itertools.combinations_with_replacement(keys, 2):
            seeds = sorted(set(masks[a]) & set(masks[b]))
            values = [jaccard_flat(masks[a][s], masks[b][s]) for s in seeds if masks[a][s].shape == masks[b][s].shape]
            if values:
                frame.loc[a.label, b.label] = frame.loc[b.label, a.label] = float(np.mean(values))
        out[cell.sparsity] = frame
    return _spread(out)


def _spread(frames: dict[float, pd.DataFrame]) -> dict[float, pd.DataFrame]:
    chosen = sorted(frames)
    if len(chosen) > MAX_SIMILARITY_SPARSITIES:
        picks = np.linspace(0, len(chosen) - 1, MAX_SIMILARITY_SPARSITIES).round().astype(int)
        chosen = [chosen[i] for i in sorted(set(picks))]
    return {s: frames[s] for s in chosen}


def plot_similarity(panels: Sequence[tuple[str, pd.DataFrame]], path: str | Path) -> Path | None:
    """One heatmap per (table, sparsity): the methods' mean Jaccard index, 0 to 1."""
    if not panels:
        return None
    from matplotlib.figure import Figure as MplFigure

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    size = max(4.0, 0.45 * max(len(frame) for _, frame in panels) + 2.0)
    figure = MplFigure(figsize=(size * ncols, size * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    image = None
    for ax, (title, frame) in zip(axes, panels):
        image = ax.imshow(frame.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(frame)), labels=frame.columns, rotation=90, fontsize="small")
        ax.set_yticks(range(len(frame)), labels=frame.index, fontsize="small")
        for (i, j), value in np.ndenumerate(frame.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small", color="white" if value < 0.6 else "black")
        ax.set_title(title, fontsize="medium")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    figure.colorbar(image, ax=axes[: len(panels)].tolist(), label="Jaccard index of kept weights, mean over seeds")
    path = Path(path)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    return path


def write_init_leaderboard(
    records: Sequence[Mapping[str, Any]], out_md: str | Path, *, title: str | None, version: str, date: str, notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write the prune-only page of `records` to `out_md` and its plots beside it; `notes` are
    lines for its footer."""
    analysis = stats.analyse(records)
    groups = _groups(analysis)
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    png = out_md.with_suffix(".png")
    plot_effective(groups, png)
    layer_plots = {}
    for group, cells in groups.items():
        path = layer_plot_path(out_md, group)
        if plot_layer_densities(group, cells, path) is not None:
            layer_plots[group] = path.name
    similarities = {group: similarity(_columns(cells)) for group, cells in groups.items()}
    panels = [(f"{_short(g)}, {sparsity_label(s)}", f) for g, frames in similarities.items() for s, f in frames.items()]
    heatmap = plot_similarity(panels, out_md.with_name(f"{out_md.stem}-similarity.png"))
    suites = sorted({g.suite for g in groups})
    lines = [f"# {title or 'Masks at initialisation: ' + ', '.join(suites)}", ""]
    lines += [
        "Prune-only trials (`train.epochs=0`): each method's mask before any training, on the same initial weights "
        "and pruning split per seed. A kept weight is *effective* when it lies on a path of kept weights from the "
        "input to the output (Vysogorets & Kempe, JMLR 2023); effective sparsity counts the others as removed.",
        "",
        f"![effective against nominal remaining weights]({png.name})",
        "",
    ]
    collapse = collapse_point_table(groups)
    if collapse:
        lines += [
            "## Collapse point",
            "",
            "The largest sparsity of the grid at which every seed keeps every layer connected (at least one effective "
            "weight in each conv and linear layer, 1x1 shortcut convolutions included, though a block whose shortcut is "
            "cut still passes its main path); none: some layer is cut off at every sparsity; (of ...): the only sparsities a "
            "row has done, where it has fewer than its table (a suite's cut).",
            "",
            collapse,
            "",
        ]
    if panels:
        lines += [
            "## How alike the masks are",
            "",
            "Jaccard index |A ∩ B| / |A ∪ B| of the kept weights of two methods on the same seed (same initial weights "
            "and pruning split), mean over the seeds both have.",
            "",
        ]
        if heatmap:
            lines += [f"![Jaccard index between the methods' masks]({heatmap.name})", ""]
        for group, frames in similarities.items():
            for sparsity, frame in frames.items():
                shown = frame.map(lambda v: "" if not np.isfinite(v) else f"{v:.3f}")
                shown.index.name = "method"
                lines += [f"{_short(group)}, {sparsity_label(sparsity)}:", "", shown.to_markdown(disable_numparse=True), ""]
    for group, cells in groups.items():
        lines += _group_section(group, cells, records, layer_plots.get(group))
    lines += ["---", ""]
    for group, cells in groups.items():
        group_records = [r for r in records if stats.record_group(r) == group]
        seeds = sorted({int(r["seed"]) for r in group_records if r.get("seed") is not None})
        prefix = f"**{group.label}**: " if len(groups) > 1 else ""
        not_done = {s: n for s, n in sorted(Counter(str(r.get("status")) for r in group_records).items()) if s != "done"}
        failures = f" Not done: {', '.join(f'{n} {s}' for s, n in not_done.items())} of {len(group_records)} trials." if not_done else ""
        lines += [f"- {prefix}Seeds {_ranges(seeds)}.{failures} Protocol: {_protocol(group_records)}"]
    lines += [f"- {note}" for note in notes]
    lines += [f"- {machines_line(records)}{_versions(records)}Leaderboard written by pai-bench {version} on {date}."]
    out_md.write_text("\n".join(lines).rstrip() + "\n")
    return out_md, png


def _group_section(group: Group, cells: Sequence[Cell], records, layer_plot: str | None) -> list[str]:
    references, columns = _references(cells), _columns(cells)
    group_records = [r for r in records if stats.record_group(r) == group]
    lines = [f"## {group.label}", ""]
    summary = _summary_table(cells)
    if summary:
        lines += [summary, ""]
    return lines + figure_sections(INIT_FIGURES, group_records, references, columns, layer_plot)


def _summary_table(cells: Sequence[Cell]) -> str | None:
    """One line per method: the trials it has done and their seeds (a run cut down for a costly
    method shows here), its collapse point, how much of its mask is rounding (the lowest Jaccard
    index over its trials), and its pruning seconds over the grid."""
    rows = {}
    for key in _mask_rows(cells):
        records = _done([r for c in cells if key in c.rows for r in c.rows[key].records])
        if not records:
            continue
        point = collapse_point(records)
        seeds = sorted({int(r["seed"]) for r in records if r.get("seed") is not None})
        row = {
            "trials (seeds)": f"{len(records)} ({_ranges(seeds)})",
            "collapse point": sparsity_label(point) if point is not None else "none",
        }
        for name, title in ROUNDING_TITLES.items():
            values = [v for r in records for v in [_number((r.get("diagnostics") or {}).get(name))] if v is not None]
            if values:
                row[f"{title} (lowest)"] = f"{min(values):.3f}"
        seconds = [v for r in records for v in [_prune_seconds(r)] if v is not None]
        if seconds:
            row["pruning seconds, mean (max)"] = f"{np.mean(seconds):.3g} ({max(seconds):.3g})"
        rows[key.label] = row
    if not rows:
        return None
    return _markdown_table(rows, "method")


def _mask_rows(cells: Sequence[Cell]) -> list[RowKey]:
    """The rows that choose masks (not the dense reference), by name."""
    return sorted({k for c in cells for k, row in c.rows.items() if not row.reference}, key=lambda k: k.label)


def _short(group: Group) -> str:
    return f"{group.cell or group.model} ({group.model} on {group.dataset})" if group.cell else f"{group.model} on {group.dataset}"


def plot_effective(groups: Mapping[Group, Sequence[Cell]], path: str | Path) -> Path:
    """Effective against nominal remaining weights (log-log), one panel per table; the diagonal
    is a mask with every kept weight effective, and × on the panel's floor a mask with none."""
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ncols = min(3, max(1, len(groups)))
    nrows = math.ceil(max(1, len(groups)) / ncols)
    figure = MplFigure(figsize=(5.5 * ncols, 4.2 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (group, cells) in zip(axes, groups.items()):
        columns = _columns(cells)
        nominal = [100 * (1 - c.sparsity) for c in columns]
        lines = {}
        for key in _mask_rows(columns):
            points = []
            for cell in columns:
                values = [v for r in _done(cell.rows[key].records if key in cell.rows else []) for v in [effective_sparsity_percent(r)] if v is not None]
                if values:
                    points.append((100 * (1 - cell.sparsity), 100.0 - float(np.mean(values))))
            if points:
                lines[key.label] = points
        positive = [y for points in lines.values() for _, y in points if y > 0]
        floor = min(positive, default=1.0) / 3
        for label, points in lines.items():
            line = ax.plot(*zip(*[(x, max(y, floor)) for x, y in points]), marker="o", markersize=4, label=label)
            empty = [(x, floor) for x, y in points if y <= 0]
            if empty:
                ax.plot(*zip(*empty), linestyle="none", marker="x", markersize=9, color=line[0].get_color())
        if any(y <= 0 for points in lines.values() for _, y in points):
            ax.plot([], [], linestyle="none", marker="x", color="grey", label="no effective weight left")
        if nominal:
            ax.plot([max(nominal), min(nominal)], [max(nominal), min(nominal)], color="black", linestyle="--", linewidth=0.8, label="all kept weights effective")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.invert_xaxis()
        ax.set_xlabel("remaining weights (%), log scale")
        ax.set_ylabel("effective remaining weights (%), mean over seeds")
        finish_panel(ax, group.label)
    return save_panels(figure, axes, len(groups), path)
