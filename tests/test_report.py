from __future__ import annotations

from pai_bench.report import LEADING, results_frame, summary_markdown


def record(method, sparsity, seed, effective, acc=None, status="done"):
    made = {
        "key": f"{method}{sparsity}{seed}",
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "status": status,
        "sparsity_effective": effective,
        "masks": {"kept": 10, "total": 100, "effective_kept": round(100 * (1 - effective)), "effective_collapsed_layers": 0},
        "config": {"train": {"epochs": 0 if acc is None and status == "done" else 3}},
    }
    if acc is not None:
        made["test_acc"] = acc
    return made


def test_results_show_effective_sparsity_beside_the_accuracy():
    frame = results_frame([record("snip", 0.9, 0, 0.92, acc=80.0), record("random", 0.9, 0, 0.95, acc=70.0)])
    assert list(frame.columns[: len(LEADING)]) == LEADING and "sparsity_effective" in LEADING
    assert frame.set_index("method").loc["random", "sparsity_effective"] == 0.95
    assert frame.set_index("method").loc["random", "effective_kept"] == 5


def test_a_prune_only_summary_shows_effective_sparsity_not_missing_accuracy():
    text = summary_markdown(results_frame([record("random", 0.9, 0, 0.95), record("random", 0.9, 1, 0.97)]))
    assert text.startswith("Prune only, no accuracy: effective sparsity (%)")
    assert "96.0000 ± 1.4142 (n=2)" in text and "nan" not in text
    trained = summary_markdown(results_frame([record("random", 0.9, 0, 0.95, acc=70.0)]))
    assert trained.startswith("test accuracy (%)") and "70.00 (n=1)" in trained and "Prune only" not in trained


def test_a_trained_run_whose_trials_all_failed_is_not_called_prune_only():
    """Failed trials keep the effective sparsity measured before training, but no accuracy."""
    text = summary_markdown(results_frame([record("random", 0.9, 0, 0.95, status="failed"), record("random", 0.9, 1, 0.97, status="failed")]))
    assert text.startswith("test accuracy (%)") and "Prune only" not in text and "2 failed" in text

