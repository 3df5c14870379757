"""The publishable leaderboard: Markdown tables, their statistics footer, and a plot beside them.

One table per (suite, model, dataset): methods as rows, sparsities as columns, cells
"mean ± std" of test accuracy over seeds. The best method of a column is bold, the methods
not significantly worse than it are marked, the dense model is a reference row, and failed
or diverged trials are counted in their cell. Under each table, figure tables that the
records can fill (theoretical speed-up, layer collapse, diagnostics such as the NTK at
initialisation) are added, and a link to the table's per-layer density plot; the footer
says the test, alpha, the seeds, what that many seeds can detect, the protocol and the
versions. The statistics are `pai_bench.stats`; this module only lays them out.

`write_leaderboard(records, "leaderboard/NAME.md")` writes NAME.md and NAME.png, and for each
table whose records have per-layer mask figures, NAME-layers-<table>.png: every method's
per-layer density at each sparsity.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date as _date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pai_bench import stats
from pai_bench.errors import UserError, unknown_choice
from pai_bench.machine import machines_line
from pai_bench.stats import Analysis, Cell, Group, RowKey
from pai_bench.version import __version__

if TYPE_CHECKING:
    from pai_bench.config import SuiteConfig
    from pai_bench.trial import TrialSpec

#: How a cell's verdict reads in the table; the legend in the footer says the same.
MARKS = {
    stats.TIED: " ≈",
    stats.SAME: " ≈",
    stats.NOT_TESTABLE: " ?",
    stats.LOWER: " ▼",
    stats.HIGHER: " ▲",
}


# --- figures beside the accuracy: data-driven, one small table each ---------------------------


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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


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


# --- the entry point ------------------------------------------------------------------------


def write_leaderboard(
    records: Sequence[Mapping[str, Any]],
    out_md: str | Path,
    *,
    alpha: float = stats.ALPHA,
    paired_test: str = "ttest",
    title: str | None = None,
    version: str | None = None,
    date: str | None = None,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write the leaderboard of `records` (trial records, any status) to `out_md` and its plot
    beside it (same name, `.png`); return both paths. The per-layer density plots go beside
    them too (`layer_plot_path`), one per table whose records have per-layer mask figures.
    `notes` are lines for the footer (what a suite cut to fit, `run_notes`).

    `version` and `date` default to this pai-bench's version and today (ISO); pass them to
    get a byte-identical file from the same records.
    """
    records = list(records)
    if not records:
        raise UserError(f"no trial records to make the leaderboard {out_md} from")
    if paired_test not in stats.PAIRED_TESTS:
        raise unknown_choice("test", paired_test, stats.PAIRED_TESTS)
    if not 0.0 < alpha < 1.0:
        raise UserError(f"alpha={alpha} is outside (0, 1)")
    from pai_bench.init_leaderboard import write_init_leaderboard

    out_md = Path(out_md)
    try:
        if all(stats.is_prune_only(record) for record in records):
            # Prune-only trials have no accuracy: their page is the masks at initialisation.
            return write_init_leaderboard(
                records, out_md, title=title, version=version or __version__, date=date or _date.today().isoformat(), notes=notes
            )
        analysis = stats.analyse(records, alpha=alpha, paired_test=paired_test)
        return _write_files(analysis, records, out_md, title, version, date, notes)
    except OSError as error:
        raise UserError(f"cannot write the leaderboard {out_md}: {error.strerror or error}; choose a folder you can write") from None


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


def load_run_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of the run in `run_dir`: those of the grid in its `config.yaml` (as
    `pai-bench run` reports them), so records left by an earlier protocol stay out, each
    labelled with its row's current name (a renamed variant's records carry the old one), and a
    `missing` placeholder for each trial of the grid with no record, so it counts as not done.
    With no usable config.yaml, or none of its keys present (e.g. records of an older
    pai-bench), all records, said on stderr."""
    from pai_bench.store import ResultStore

    store = ResultStore(run_dir)
    if not store.trials.is_dir():
        raise UserError(f"no trial records in {run_dir} (expected {store.trials}); pass the out= folder of a run")
    records = store.records()
    if not records:
        raise UserError(f"no trial records in {store.trials}; pass the out= folder of a run")
    specs = run_grid(run_dir)
    if specs is None:
        return records
    from pai_bench.report_scope import report_records

    selected = report_records(specs, store)
    if all(record["status"] == "missing" for record in selected):
        print(f"pai-bench: note: no record matches {Path(run_dir) / 'config.yaml'}; using every record in {store.trials}", file=sys.stderr)
        return records
    return selected


def run_grid(run_dir: str | Path) -> list[TrialSpec] | None:
    """The trial specs of the run in `run_dir`, from its `config.yaml` (`run_config`)."""
    from pai_bench.grid import expand_grid

    config = run_config(run_dir)
    return expand_grid(config) if config is not None else None


def run_config(run_dir: str | Path, say: bool = True) -> SuiteConfig | None:
    """The grid of the run in `run_dir`, its `config.yaml`; None when it has none or it does
    not load (said on stderr unless `say` is false)."""
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.is_file():
        return None
    from pai_bench.config import load_config

    try:
        return load_config(str(config_path))
    except UserError as error:
        if say:
            print(f"pai-bench: note: {config_path} does not load ({error}); using every record in {Path(run_dir) / 'trials'}", file=sys.stderr)
        return None


def run_notes(run_dir: str | Path) -> list[str]:
    """Footer lines for the pages of the run in `run_dir`: what its suite cut to fit (a
    config.yaml that does not load was already said by `load_run_records`)."""
    config = run_config(run_dir, say=False)
    return cut_notes(config) if config is not None else []


def cut_notes(config: SuiteConfig) -> list[str]:
    from pai_bench.grid import describe_cuts

    return [f"Cut to fit: {line}." for line in describe_cuts(config.cuts)]


# --- Markdown -------------------------------------------------------------------------------


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


def _references(cells: Sequence[Cell]) -> list[tuple[Cell, RowKey]]:
    """The dense reference rows of a group, wherever they sit."""
    return [(c, k) for c in cells for k in sorted(c.rows, key=lambda k: k.label) if c.rows[k].reference]


def _columns(cells: Sequence[Cell]) -> list[Cell]:
    """The cells with rows other than the reference: the table's sparsity columns."""
    return [c for c in cells if not c.reference]


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
    lines += _details(analysis, columns)
    return lines


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
                "IQM of normalised accuracy (%)": [f"{ranking.iqm[m]:.2f}" for m in ranking.methods],
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


def _test_sentence(analysis: Analysis) -> str:
    paired = "paired t-test by seed" if analysis.paired_test == "ttest" else "Wilcoxon signed-rank test by seed"
    return f"two-sided {paired} against the best, Welch's t-test where the two do not have the same seeds done"


def _footer(analysis: Analysis, records: Sequence[Mapping[str, Any]], version: str, date: str, notes: Sequence[str] = ()) -> list[str]:
    groups = _groups(analysis)
    lines = ["---", ""]
    for group, cells in groups.items():
        group_records = [r for r in records if stats.record_group(r) == group]
        n = _modal_n(cells)
        seeds = sorted({int(r["seed"]) for r in group_records if r.get("seed") is not None})
        prefix = f"**{group.label}**: " if len(groups) > 1 else ""
        lines += [f"- {prefix}{_seeds_sentence(n, seeds, cells, group_records)} {_detectable_sentence(n, analysis, cells)}"]
        lines += [f"- {prefix}Protocol: {_protocol(group_records)}"]
    test = "scipy.stats.ttest_rel" if analysis.paired_test == "ttest" else "scipy.stats.wilcoxon"
    lines += [
        f"- Tests: each method against the best of its column, {test} on per-seed pairs when both have the same seeds "
        "done (a seed fixes the initialisation and the pruning split), else Welch's t-test (scipy.stats.ttest_ind, "
        "equal_var=False) on what each has; two-sided; Holm-corrected within each column (statsmodels multipletests), "
        f"α = {analysis.alpha:g}. Not testable (?) with fewer than 2 seeds or values that do not vary: no p-value is claimed. "
        "Ablations (`method (shuffled)`, ...) are tested against their own method, a separate Holm family: "
        "≈ no significant difference, ▼ significantly lower, ▲ significantly higher.",
        "- P(against > row): probability of improvement, the Mann-Whitney U statistic over n_A·n_B (as rliable); "
        "it stays informative where too few seeds keep p above α. 95 % intervals: t-based, and BCa bootstrap "
        f"(scipy.stats.bootstrap) from {stats.BOOTSTRAP_MIN_N} seeds on.",
        "- Failed, diverged and unfinished trials have no accuracy: they are left out of means and tests and counted "
        "in their cell; a cell with a different seed count than the rest says n.",
        f"- {machines_line(records)}{_versions(records)}Leaderboard written by pai-bench {version} on {date}.",
    ]
    return lines[:-1] + _trained_mask_lines(records) + [f"- {note}" for note in notes] + lines[-1:]


def _trained_mask_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """A note per row whose masks cost training (imp and its variants: `mask_train_epochs`)."""
    costs: dict[str, dict[float, int]] = {}
    for record in records:
        if record.get("mask_train_epochs") is not None and not record.get("ablation"):
            costs.setdefault(stats.record_row_name(record), {})[float(record["sparsity"])] = int(record["mask_train_epochs"])
    lines = []
    for method, by_sparsity in sorted(costs.items()):
        spans = ", ".join(f"{epochs} at {sparsity_label(sparsity)}" for sparsity, epochs in sorted(by_sparsity.items()))
        lines.append(
            f"- {method}'s masks cost training, unlike the PaI methods' (pruned at initialisation, before any): "
            f"one trajectory per seed trains, prunes and rewinds level by level. Epochs of training its mask took "
            f"before the trial's own (`mask_train_epochs`): {spans}."
        )
    return lines


def _seeds_sentence(n: int, seeds: list[int], cells: Sequence[Cell], records) -> str:
    unfinished = Counter(r.get("status") for r in records if r.get("status") != "done")
    failures = f" Not done: {', '.join(f'{c} {s}' for s, c in sorted(unfinished.items()))} of {len(records)} trials." if unfinished else ""
    row_seeds = [{int(r["seed"]) for r in row.records if r.get("seed") is not None} for c in cells for row in c.rows.values()]
    shared = "shared by every method" if all(found == set(seeds) for found in row_seeds) else "not the same for every method"
    if not n:
        return f"No trial finished (seeds {_ranges(seeds)}).{failures}"
    return f"{_plural(n, 'seed')} per cell (seeds {_ranges(seeds)}, {shared}).{failures}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _detectable_sentence(n: int, analysis: Analysis, cells: Sequence[Cell]) -> str:
    d = stats.detectable(n, alpha=analysis.alpha)
    if n < 2:
        return "With fewer than 2 seeds nothing is testable: the table shows means only."
    parts = []
    if d.paired_effect is not None:
        parts.append(
            f"a paired t-test detects, with power {d.power:g} at α = {d.alpha:g} (one comparison, before Holm), a mean "
            f"difference of {d.paired_effect:.2f} standard deviations of the per-seed differences"
        )
    if d.welch_effect is not None:
        parts.append(f"Welch's test {d.welch_effect:.2f} pooled standard deviations")
    floor = (
        f"the smallest p any outcome can give (one method ahead on every seed) is {_p(d.min_p_wilcoxon)} for the "
        f"Wilcoxon signed-rank test and {_p(d.min_p_mannwhitney)} for Mann-Whitney"
    )
    reach = [name for name, p in (("Wilcoxon", d.min_p_wilcoxon), ("Mann-Whitney", d.min_p_mannwhitney)) if p >= d.alpha]
    never = f", so {' and '.join(reach)} can never reach p < {d.alpha:g} here" if reach else ""
    m = max((len(c.competitors) - 1 for c in cells), default=0)
    family = f" Holm over a column's {m} comparisons asks the smallest p to be below {_p(d.alpha / m)}." if m > 1 else ""
    return f"What {n} seeds can detect: {'; '.join(parts)}; {floor}{never}.{family}"


def _protocol(records: Sequence[Mapping[str, Any]]) -> str:
    descriptions = Counter(_describe(r.get("config") or {}) for r in records if r.get("config"))
    if not descriptions:
        return "not recorded."
    if len(descriptions) == 1:
        return next(iter(descriptions)) + _macs(records)
    listed = "; ".join(f"{d} ({c} trials)" for d, c in descriptions.most_common())
    return f"**the trials differ in protocol**: {listed}."


def _describe(config: Mapping[str, Any]) -> str:
    model, data, train, prune = (config.get(k) or {} for k in ("model", "data", "train", "prune"))
    parts = [
        str(model.get("name", "?"))
        + (f" (weights {model['weights']})" if model.get("weights") else "")
        + f" on {data.get('name', '?')}"
        + (f" ({Path(str(data['root'])).name}/)" if data.get("name") == "imagefolder" and data.get("root") else "")
        + (f" (subset of {data['subset']} training images)" if data.get("subset") else "")
    ]
    if train.get("epochs") == 0:
        parts.append("prune only (train.epochs=0: no training)")
    else:
        sgd = f"SGD lr {train.get('lr')}, momentum {train.get('momentum')}" + (" nesterov" if train.get("nesterov") else "")
        parts.append(
            f"{train.get('epochs')} epochs, batch {train.get('batch_size')}, {sgd}, weight decay {train.get('weight_decay')}, "
            f"lr ×{train.get('gamma')} at epochs {list(train.get('milestones') or [])}"
        )
        parts.append(f"augmentation {data.get('augment')}")
    parts.append(
        f"pruning split {data.get('prune_per_class')} images per class"
        + (f" in batches of {prune['batch_size']}" if prune.get("batch_size") else "")
    )
    if prune.get("exclude"):
        parts.append(f"kept dense: {', '.join(prune['exclude'])}")
    return ", ".join(parts) + "."


def _macs(records) -> str:
    dense = {r.get("macs_dense") for r in records if r.get("macs_dense")}
    if len(dense) != 1:
        return ""
    return f" Dense model: {next(iter(dense)) / 1e6:.4g} M MACs per example (FlopCounterMode, MACs = FLOPs / 2)."


def _versions(records) -> str:
    found: dict[str, set[str]] = {}
    for r in records:
        for name, value in (r.get("versions") or {}).items():
            if name in ("pai_bench", "torch"):
                found.setdefault(name, set()).add(str(value))
    if not found:
        return ""
    named = {"pai_bench": "pai-bench", "torch": "torch"}
    return "Trials run with " + ", ".join(f"{named[k]} {' / '.join(sorted(v))}" for k, v in sorted(found.items())) + ". "


# --- the plot -------------------------------------------------------------------------------


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


# --- formatting helpers ---------------------------------------------------------------------


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
