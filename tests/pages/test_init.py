from __future__ import annotations

import pytest
import torch

from pai_bench.pages.init import collapse_point
from pai_bench.stats import is_prune_only
from pai_bench.pages import write_leaderboard
from pai_bench.maskbits import encode_masks

LAYERS = ["conv.weight", "fc.weight"]


def made_record(method, sparsity, seed, *, model="resnet20", effective=(5, 5), mask=None, prune_s=1.0, diagnostics=None, status="done"):
    """A prune-only record as `pai_bench.trial` writes it, with the figures the page reads."""
    layers = [{"name": n, "kept": 6, "total": 8, "density": 0.75, "outputs": 2, "alive_outputs": 2, "collapsed": False, "effective": e} for n, e in zip(LAYERS, effective)]
    record = {
        "key": f"{method}-{model}-{sparsity}-{seed}",
        "status": status,
        "suite": "init",
        "cell": None,
        "method": method,
        "ablation": None,
        "sparsity": sparsity,
        "seed": seed,
        "model": model,
        "dataset": "cifar10",
        "config": {"model": {"name": model}, "data": {"name": "cifar10", "prune_per_class": 10}, "train": {"epochs": 0}},
        "masks": {"kept": 12, "total": 16, "effective_kept": sum(effective), "layers": layers},
        "sparsity_effective": 1 - sum(effective) / 16,
        "timings": {"prune_s": prune_s},
    }
    if mask is not None:
        record["mask"] = encode_masks({"conv.weight": torch.tensor(mask[:4], dtype=torch.bool), "fc.weight": torch.tensor(mask[4:], dtype=torch.bool)})
    if diagnostics:
        record["diagnostics"] = diagnostics
    return record


def table_after(text: str, heading: str) -> dict[str, dict[str, str]]:
    """The first Markdown table after the line that starts with `heading`, as {row: {column: cell}}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    header, body = rows[0], rows[2:]
    return {row[0]: dict(zip(header[1:], row[1:])) for row in body}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("init")
    records = [
        # a: connected at 90 and 99 % on every seed, collapsed at 99.9 % on seed 1
        made_record("a", 0.9, 0, mask=[1, 1, 0, 0, 1, 1, 0, 0], diagnostics={"rounding_jaccard_dtype": 1.0, "rounding_jaccard_order": 0.9, "ntk_trace_ratio": 0.5}),
        made_record("a", 0.9, 1, mask=[1, 1, 0, 0, 1, 1, 0, 0], diagnostics={"rounding_jaccard_dtype": 0.8, "rounding_jaccard_order": 1.0, "ntk_trace_ratio": 0.7}),
        made_record("a", 0.99, 0, effective=(1, 1), prune_s=3.0),
        made_record("a", 0.99, 1, effective=(1, 1), prune_s=5.0),
        made_record("a", 0.999, 0, effective=(1, 1)),
        made_record("a", 0.999, 1, effective=(0, 1)),
        # b: a layer cut off at every sparsity; its masks overlap a's by 1/3 on seed 0, fully on seed 1
        made_record("b", 0.9, 0, effective=(0, 3), mask=[1, 0, 1, 0, 1, 0, 1, 0]),
        made_record("b", 0.9, 1, effective=(3, 0), mask=[1, 1, 0, 0, 1, 1, 0, 0]),
        made_record("b", 0.99, 0, effective=(0, 0)),
        made_record("b", 0.99, 1, effective=(0, 0)),
        # on a second model, b stays connected up to 99 % (its failed 99.9 % trial does not count)
        made_record("b", 0.9, 0, model="vgg16-bn"),
        made_record("b", 0.99, 0, model="vgg16-bn"),
        made_record("b", 0.999, 0, model="vgg16-bn", effective=(0, 0), status="failed"),
        made_record("dense", 0.0, 0, effective=(8, 8), diagnostics={"ntk_trace_ratio": 1.0}),
    ]
    out, png = write_leaderboard(records, tmp_path / "init.md", version="0", date="2026-01-01")
    assert png.is_file() and (tmp_path / "init-similarity.png").is_file()
    return out.read_text()


def test_a_prune_only_run_gets_the_init_page_not_accuracy(page):
    assert page.startswith("# Masks at initialisation: init")
    assert "Test accuracy" not in page and "test accuracy" not in page


def test_the_collapse_point_is_the_largest_sparsity_every_seed_keeps_connected(page):
    table = table_after(page, "## Collapse point")
    assert table["a"] == {"resnet20 on cifar10": "99 %", "vgg16-bn on cifar10": ""}
    # b finished fewer sparsities than the table has: its point is among those, said so
    assert table["b"] == {"resnet20 on cifar10": "none (of 90 %, 99 %)", "vgg16-bn on cifar10": "99 % (of 90 %, 99 %)"}
    assert "dense" not in table


def test_similarity_is_the_mean_jaccard_over_shared_seeds(page):
    table = table_after(page, "resnet20 on cifar10, 90 %:")
    assert table["a"]["b"] == table["b"]["a"] == f"{(1 / 3 + 1.0) / 2:.3f}"
    assert table["a"]["a"] == "1.000"


def test_each_model_has_effective_sparsity_collapse_time_rounding_and_ntk(page):
    section = page[page.index("## init: resnet20 on cifar10") :]
    summary = table_after(section, "## init: resnet20 on cifar10")
    assert summary["a"]["collapse point"] == "99 %" and summary["a"]["trials (seeds)"] == "6 (0–1)"
    assert summary["a"]["Jaccard with the mask from scores in the other precision (lowest)"] == "0.800"
    assert summary["a"]["Jaccard with the mask from the pruning split in another order (lowest)"] == "0.900"
    effective = table_after(section, "Effective sparsity (%)")
    assert effective["a"]["90 %"] == "37.5" and effective["a"]["99 %"] == "87.5"
    assert effective["b"]["99 %"] == "100"
    collapsed = table_after(section, "Layers collapsed")
    assert collapsed["a"]["99.9 %"] == "1" and collapsed["b"]["90 %"] == "1" and collapsed["b"]["99 %"] == "2"
    seconds = table_after(section, "Pruning seconds")
    assert seconds["a"]["99 %"] == "4"
    ntk = table_after(section, "NTK trace at initialisation")
    assert ntk["*dense (reference)*"]["90 %"] == "1" and ntk["a"]["90 %"] == "0.6"


def test_collapse_point_ignores_unfinished_trials_and_says_none_when_nothing_is_connected():
    assert collapse_point([made_record("a", 0.9, 0), made_record("a", 0.99, 0, effective=(0, 0), status="failed")]) == 0.9
    assert collapse_point([made_record("a", 0.9, 0, effective=(0, 2))]) is None
    assert is_prune_only(made_record("a", 0.9, 0)) and not is_prune_only({"config": {"train": {"epochs": 3}}})
