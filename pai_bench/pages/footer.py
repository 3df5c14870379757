"""A page's footer and protocol text: the test and alpha, the seeds and what that many can
detect, the protocol each table ran (model, data, training, pruning), the machines and versions,
the mask costs of trajectory methods and the notes (cuts) a run adds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pai_bench import stats
from pai_bench.machine import machines_line
from pai_bench.pages.tables import _groups, _modal_n, _p, _plural, _ranges, sparsity_label
from pai_bench.stats import Analysis, Cell


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
