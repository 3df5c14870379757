"""The published numbers beside an accuracy table: only where a source covers the table's
model, data and sparsity, with the run's means, the source's numbers and the rank agreement."""

from __future__ import annotations

from pai_bench.pages.published import published_section


def _record(row: str, seed: int, accuracy: float, model: str = "resnet20", dataset: str = "cifar10-jpeg") -> dict:
    return {"status": "done", "model": model, "dataset": dataset, "row": row, "sparsity": 0.99, "seed": seed, "test_acc": accuracy}


def test_a_covered_table_shows_the_sources_numbers_and_the_rank_agreement():
    runs = {"random": (30.0, 32.0), "snip": (50.0, 51.0), "iter-snip": (52.0, 53.0), "synflow": (55.0, 54.0), "phew": (60.0, 61.0), "px": (58.0, 57.0)}
    records = [_record(row, seed, acc) for row, accs in runs.items() for seed, acc in enumerate(accs)]
    text = "\n".join(published_section(records))
    assert "### Beside the published numbers (full protocol)" in text
    assert "CIFAR-10 JPEG re-encoding" in text  # the data's note: cifar10-jpeg is set beside cifar10
    assert "| phew " in text and "60.50 ± 0.71 (n=2)" in text and "70.44" in text  # ours and NPB's at 99 %
    # the run orders the five shared methods as NPB does: tau 1, and its two seeds agree too
    assert "npb-figure: τ = +1.00" in text and "over 5 methods (iter-snip, phew, random, snip, synflow); seeds τ = +1.00" in text
    assert "- **npb-figure**: Pham et al." in text and "labels printed on a figure" in text


def test_a_table_no_source_covers_gets_no_section():
    assert published_section([_record("random", 0, 50.0, model="quicknet", dataset="quickstart")]) == []
