"""The leaderboard: a golden Markdown file for a fixed result set, the plot, failures shown,
small n said honestly, data-driven figure tables, variants and ablations as rows."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pai_bench.config import load_config
from pai_bench.errors import UserError
from pai_bench import stats
from pai_bench.pages.plots import layer_density_panels
from pai_bench.pages.tables import _groups
from pai_bench.grid import expand_grid
from pai_bench.trial import load_trial_data, run_trial
from page_records import DATA, fixed_records, write

#: Set to rewrite the golden file after an intended change of the leaderboard's layout.
UPDATE = os.environ.get("PAI_BENCH_UPDATE_GOLDEN") == "1"


def main_table(text: str) -> dict[str, list[str]]:
    """The first table of the first section: {row label: cells}."""
    lines = text.split("\n## ", 1)[1].split("\n\n")[1].splitlines()[2:]
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines}


def test_golden_markdown_and_plot(tmp_path):
    md, png = write(fixed_records(), tmp_path / "toy.md")
    assert png == tmp_path / "toy.png"
    golden = DATA / "toy.md"
    if UPDATE:
        golden.write_text(md.read_text())
    assert md.read_text() == golden.read_text()
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    layers = tmp_path / "toy-layers-toy-resnet20-cifar10.png"
    assert f"]({layers.name})" in md.read_text()
    assert layers.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and layers.stat().st_size > 10_000


def test_table_marks_best_ties_failures_and_the_reference(tmp_path):
    md, _ = write(fixed_records(), tmp_path / "toy.md")
    text = md.read_text()
    table = main_table(text)
    assert table["*dense (reference)*"] == ["91.63 ± 0.13", "91.63 ± 0.13"]
    assert table["synflow"][:2] == ["**88.55 ± 0.12**", "**80.38 ± 0.08**"]
    assert table["snip"][:2] == ["88.43 ± 0.19 ≈", "76.41 ± 2.35 (n=4, 1 diverged)"]
    assert table["random"][1] == "71.15 ± 0.36 (n=4, 1 failed)"
    assert table["snip (shuffled)"][:2] == ["88.08 ± 0.20 ▼", "75.66 ± 0.59 ≈"]
    assert "What 5 seeds can detect" in text and "0.0625 for the Wilcoxon" in text
    assert "pai-bench 0.1.0 on 2025-01-01" in text and "160 epochs, batch 128" in text


def test_one_seed_claims_nothing(tmp_path):
    records = [r for r in fixed_records() if r["seed"] == 0]
    md, png = write(records, tmp_path / "one.md")
    text = md.read_text()
    assert "With fewer than 2 seeds nothing is testable" in text
    table = main_table(text)
    assert table["synflow"] == ["**88.61**", "**80.37**"]
    assert table["snip"] == ["88.50 ?", "78.53 ?"] and table["random"] == ["86.10 ?", "71.20 ?"]
    assert table["snip (shuffled)"] == ["88.12 ?", "76.10 ?"]
    assert "not testable (fewer than 2 seeds)" in text
    assert png.stat().st_size > 0


def test_wilcoxon_option_is_named_and_used(tmp_path):
    md, _ = write(fixed_records(), tmp_path / "w.md", paired_test="wilcoxon")
    text = md.read_text()
    assert "Wilcoxon signed-rank test by seed" in text and "scipy.stats.wilcoxon" in text
    # 5 seeds: no Wilcoxon comparison can be significant, so SNIP at 90 % stays tied.
    assert "| 90 %       | snip            | 5   |" in text and "Wilcoxon | 0.0625" in text


def test_figure_tables_follow_the_records(tmp_path):
    records = fixed_records()
    for r in records:
        if r["status"] == "done":
            r["diagnostics"] = {"ntk_condition": 10.0 + r["seed"], "label": "not a number"}
    text = write(records, tmp_path / "d.md")[0].read_text()
    assert "Diagnostics: ntk_condition, mean over seeds:" in text
    diagnostics = text.split("Diagnostics: ntk_condition, mean over seeds:")[1].split("\n\n")[1]
    assert "| random              | 12     | 11.5   |" in diagnostics  # means of 10 + seed
    assert "label" not in diagnostics and "not a number" not in text
    assert "Theoretical speed-up" in text and "71.4×" in text
    # Empty layers: the max over seeds, shown because random at 99 % emptied its classifier.
    empty = text.split("Layer collapse")[1].split("\n\n")[1]
    assert "| random          | 0      | 1      |" in empty
    for r in records:
        r.pop("speedup", None)
        for layer in r.get("masks", {}).get("layers", []):
            layer.update(kept=1, alive_outputs=1)
    text = write(records, tmp_path / "e.md")[0].read_text()
    assert "speed-up" not in text and "Layer collapse" not in text and "No trial has an empty layer." in text


def test_tie_broken_masks_and_pruning_warnings_are_shown(tmp_path):
    records = fixed_records()
    noisy = [r for r in records if r["method"] == "synflow" and r["status"] == "done"]
    for r in noisy:
        r["masks"]["tie_break"] = {"share": 0.25 if r["sparsity"] > 0.95 else 0.5, "round": 3}
        r["warnings"] = [f"synflow: in round {r['seed'] + 2} of 100, 7 of the 28 kept weights were tied"]
    noisy[0]["warnings"].append("synflow: scores are noise")
    text = write(records, tmp_path / "w.md")[0].read_text()
    ties = text.split("Kept weights chosen by the tie-break")[1].split("\n\n")[1]
    assert "| synflow         | 50.0%  | 25.0%  |" in ties and "| snip            | 0.0%   | 0.0%   |" in ties
    assert "Every kept weight was ranked by its score." not in text
    warned = text.split("Warnings raised while pruning:")[1].split("\n\n")[1].splitlines()
    # one line per kind of message (numbers blanked), quoting the first trial's
    assert warned == [
        f"- **synflow**, {len(noisy)} trials: synflow: in round 2 of 100, 7 of the 28 kept weights were tied",
        "- **synflow**, 1 trial: synflow: scores are noise",
    ]


def test_a_warning_naming_a_finding_links_it(tmp_path):
    """PX's warning names the page that explains it; the leaderboard's line links the page
    (relative to leaderboard/, where published leaderboards live), and the page exists."""
    from pai_bench.methods.px import FINDING

    records = fixed_records()
    for r in records:
        if r["method"] == "snip" and r["status"] == "done":
            r["warnings"] = [f"px (variant=authors): its scores are rounding noise; see {FINDING}"]
    text = write(records, tmp_path / "f.md")[0].read_text()
    link = "[docs/findings/px-batchnorm.md](../docs/findings/px-batchnorm.md)"
    assert f"its scores are rounding noise; see {link}" in text
    assert (Path(__file__).parents[2] / "leaderboard" / "../docs/findings/px-batchnorm.md").resolve().is_file()


def test_leaderboard_of_ablated_trials_with_ntk(tmp_path):
    """Real one-epoch quickstart trials: shuffled rows tested against their method, the NTK
    tables, and the per-layer density plot beside the Markdown."""
    overrides = ["data.subset=100", "train.epochs=1", "seeds=2", "sparsities=[0.5]", "methods=[dense,magnitude]",
                 "ablations=[shuffle]", "diagnostics.ntk=true", "diagnostics.ntk_examples=2"]
    specs = expand_grid(load_config("quickstart", overrides))
    dataset = load_trial_data(specs[0])
    records = [run_trial(spec, dataset=dataset) for spec in specs]
    assert all(r["status"] == "done" for r in records)
    md, _ = write(records, tmp_path / "q.md")
    text = md.read_text()
    table = main_table(text)
    assert set(table) == {"*dense (reference)*", "magnitude", "magnitude (shuffled)"}
    assert table["magnitude (shuffled)"][0][-1] in "≈▼▲?"  # tested against magnitude
    details = next(line for line in text.splitlines() if line.startswith("| 50 %") and "| magnitude (shuffled) |" in line)
    assert [c.strip() for c in details.split("|")][9:11] == ["magnitude", "paired t"]  # against, test
    assert "NTK trace at initialisation, pruned / dense" in text and "NTK top eigenvalue at initialisation" in text
    ntk = text.split("NTK trace at initialisation")[1].split("\n\n")[1]
    assert "| *dense (reference)*  | 1 " in ntk
    layers = tmp_path / "q-layers-quickstart-quicknet-quickstart.png"
    assert layers.stat().st_size > 0 and f"]({layers.name})" in text
    # Without diagnostics in the records, no NTK table.
    for r in records:
        r.pop("diagnostics")
    assert "NTK" not in write(records, tmp_path / "plain.md")[0].read_text()


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no trial records"):
        write([], tmp_path / "x.md")
    with pytest.raises(UserError, match="unknown test 'sign'"):
        write(fixed_records(), tmp_path / "x.md", paired_test="sign")
    duplicate = fixed_records()
    duplicate.append({**duplicate[5], "key": "stale"})
    with pytest.raises(UserError, match="two finished trials of synflow at sparsity 0.9, seed 0"):
        write(duplicate, tmp_path / "x.md")


# --- variants: rows of their own -------------------------------------------------------------


def with_variant_rows(records: list[dict]) -> list[dict]:
    """`fixed_records` plus a `snip-train` row (SNIP with other options, 0.05 points above snip
    on every seed, still below the best) and its shuffled ablation (0.5 points below snip's)."""
    extra = []
    for r in records:
        if r["method"] == "snip" and r["status"] == "done":
            shift = -0.5 if r.get("ablation") else 0.05
            extra.append({**r, "key": r["key"] + "-train", "row": "snip-train", "options": {"bn_mode": "train", "rounds": 1},
                          "test_acc": r["test_acc"] + shift})
    return records + extra


def test_a_variant_is_a_row_tested_paired_by_seed_with_its_ablation(tmp_path):
    records = with_variant_rows(fixed_records())
    md, png = write(records, tmp_path / "v.md")
    text = md.read_text()
    table = main_table(text)
    assert {"snip", "snip (shuffled)", "snip-train", "snip-train (shuffled)"} <= set(table)
    # The old rows are what they were without the variant (records without `row` read as their method).
    plain = main_table(write(fixed_records(), tmp_path / "plain.md")[0].read_text())
    unmarked = lambda cells: [re.sub(" [≈?▼▲]", "", cell) for cell in cells]  # noqa: E731 (the marks follow the new best)
    assert unmarked(table["snip"]) == unmarked(plain["snip"])
    analysis = stats.analyse(records)
    cell = next(c for c in analysis.cells.values() if c.sparsity == 0.9)
    variant = cell.rows[stats.RowKey("snip-train")]
    assert variant.comparison.test == "paired t" and variant.comparison.against == cell.best.label
    assert variant.summary.mean == pytest.approx(cell.rows[stats.RowKey("snip")].summary.mean + 0.05)
    ablated = cell.rows[stats.RowKey("snip-train", "shuffle")].comparison
    assert (ablated.row, ablated.against, ablated.test) == ("snip-train (shuffled)", "snip-train", "paired t")
    assert "snip-train" in analysis.ranking.methods
    (_, cells), = _groups(analysis).items()
    assert "snip-train" in dict(layer_density_panels(cells))[0.99]  # a line of the per-layer plot
    assert png.stat().st_size > 10_000


def test_effective_sparsity_gets_a_table_and_a_plot_against_effective_remaining_weights(tmp_path):
    records = fixed_records()
    assert "Effective sparsity" not in write(records, tmp_path / "plain.md")[0].read_text()
    assert not (tmp_path / "plain-effective.png").exists()
    for r in records:
        # random leaves a tenth of its kept weights on no path; the others none
        dead = 0.1 if r["method"] == "random" else 0.0
        r["sparsity_effective"] = r["sparsity"] + (1 - r["sparsity"]) * dead
    text = write(records, tmp_path / "e.md")[0].read_text()
    table = text.split("Effective sparsity (%)")[1].split("\n\n")[1]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()[2:]}
    assert rows["random"] == ["91", "99.1"] and rows["synflow"] == ["90", "99"]
    plot = tmp_path / "e-effective.png"
    assert f"]({plot.name})" in text and plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
