"""The records a page reads from a run folder: those of the grid in its config.yaml, named by
its rows."""

from __future__ import annotations

import pytest
from page_records import write

from pai_bench.config import load_config, to_yaml
from pai_bench.errors import UserError
from pai_bench.grid import expand_grid
from pai_bench.pages import load_run_records
from pai_bench.store import ResultStore


def test_a_run_folder_gives_the_records_of_its_config(tmp_path, capsys):
    config = load_config("quickstart", ["seeds=2", "methods=[dense,random]", "sparsities=[0.5]", f"out={tmp_path}"])
    (tmp_path / "config.yaml").write_text(to_yaml(config))
    store = ResultStore(tmp_path)
    specs = expand_grid(config)
    for i, spec in enumerate(specs):
        store.write({"key": spec.key, "status": "done", "suite": "quickstart", "method": spec.method, "sparsity": spec.sparsity,
                     "seed": spec.seed, "model": "quicknet", "dataset": "quickstart", "test_acc": 40.0 + i})
    # An earlier protocol's record of the same trial stays out.
    store.write({"key": "old-protocol", "status": "done", "suite": "quickstart", "method": "random", "sparsity": 0.5,
                 "seed": 0, "model": "quicknet", "dataset": "quickstart", "test_acc": 10.0})
    records = load_run_records(tmp_path)
    assert sorted(r["key"] for r in records) == sorted(spec.key for spec in specs)
    # Without its config, every record is read, and the clash is named.
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(UserError, match="old-protocol"):
        write(load_run_records(tmp_path), tmp_path / "lb.md")
    with pytest.raises(UserError, match="no trial records in"):
        load_run_records(tmp_path / "nothing")


def test_a_run_folder_names_records_by_the_rows_of_its_config(tmp_path):
    """A renamed variant's records carry the old name; the run's config names them."""
    common = ["seeds=1", "sparsities=[0.5]", f"out={tmp_path}"]
    store = ResultStore(tmp_path)
    for spec in expand_grid(load_config("quickstart", [*common, "methods=[px,pxu]", "variants.pxu={method: px, variant: uniform}"])):
        store.write({"key": spec.key, "status": "done", "suite": "quickstart", "method": spec.method, "row": spec.row_name,
                     "sparsity": spec.sparsity, "seed": 0, "model": "quicknet", "dataset": "quickstart", "test_acc": 40.0})
    renamed = load_config("quickstart", [*common, "methods=[px,px-eval-pk]", "variants.px-eval-pk={method: px, variant: uniform}"])
    (tmp_path / "config.yaml").write_text(to_yaml(renamed))
    assert sorted(r["row"] for r in load_run_records(tmp_path)) == ["px", "px-eval-pk"]
    assert sorted(r["row"] for r in store.records()) == ["px", "pxu"]  # the records themselves are untouched
