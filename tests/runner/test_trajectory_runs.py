"""imp in a suite on the local executor: one trajectory per seed writes every sparsity's
record, its ablated trials start from its masks, and a run killed mid-trajectory finishes,
when rerun, with the records of an uninterrupted run."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from quick_trials import SMALL, small_specs

from pai_bench.cli import main
from pai_bench.runner import local
from pai_bench.runner.local import run_local
from pai_bench.store import ResultStore
from pai_bench.trial import data_key

TINY = ["methods=[imp]", "imp.fraction=0.5", "sparsities=[0.5,0.75]", "data.subset=40", "train.batch_size=20", "train.epochs=2"]


def run(specs, store, quickstart):
    return run_local(specs, store, {data_key(spec): quickstart for spec in specs}, progress=False, checkpoint_every=1)


def test_imp_with_its_ablations_in_a_suite(tmp_path, capsys):
    out = tmp_path / "q"
    args = [*SMALL, *TINY, "train.epochs=1", "methods=[dense,imp]", "ablations=[shuffle,reinit]", "executor=local", f"out={out}"]
    assert main(["show", *args]) == 0
    shown = capsys.readouterr().out
    assert "# imp: one trajectory per seed and cell: 3 trained levels (to 75 % sparsity), 3 epochs of training each" in shown
    assert main(["run", *args, "--no-progress"]) == 0
    assert "7 trials in" in capsys.readouterr().out
    records = ResultStore(out).records()
    assert sorted((r["method"], r["ablation"] or "", r["sparsity"]) for r in records) == [
        ("dense", "", 0.0),
        ("imp", "", 0.5), ("imp", "", 0.75),
        ("imp", "reinit", 0.5), ("imp", "reinit", 0.75),
        ("imp", "shuffle", 0.5), ("imp", "shuffle", 0.75),
    ]  # fmt: skip
    assert all(r["status"] == "done" for r in records)
    plain = {r["sparsity"]: r for r in records if r["method"] == "imp" and not r["ablation"]}
    for record in records:
        if record["ablation"]:
            reached = plain[record["sparsity"]]["masks"]["layers"]
            kept = [layer["kept"] for layer in record["masks"]["layers"]]
            assert kept == [layer["kept"] for layer in reached]  # the same counts per layer
    reinit = next(r for r in records if r["ablation"] == "reinit" and r["sparsity"] == 0.75)
    assert reinit["masks"]["layers"] == plain[0.75]["masks"]["layers"]  # the same mask, other weights
    assert reinit["ablation_seed"] != 0
    leaderboard = (out / "leaderboard.md").read_text()
    assert "| imp " in leaderboard and "imp (shuffled)" in leaderboard
    assert "masks cost training" in leaderboard
    assert not list((out / "checkpoints").iterdir())  # a finished trajectory keeps no checkpoint
    assert main(["results", str(out), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    imp = table[(table["method"] == "imp") & table["ablation"].isna()]
    assert sorted(imp["mask_train_epochs"]) == [1, 2]  # level 1's mask took level 0's epoch, level 2's two


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing records it as a failure."""


def test_killed_mid_trajectory_a_rerun_writes_the_uninterrupted_records(tmp_path, quickstart, monkeypatch):
    specs = small_specs(*TINY, "seeds=2")
    assert len(specs) == 4
    uninterrupted = ResultStore(tmp_path / "whole")
    assert run(specs, uninterrupted, quickstart) == {"done": 4}

    real, epochs = local.run_trajectory, []

    def killed_in_seed_one_level_one(*args, **kwargs):
        def count(metrics):
            epochs.append(metrics)
            if len(epochs) == 6 + 3:  # seed 0's six epochs, then the first of seed 1's level 1
                raise Killed

        return real(*args, on_epoch=count, **kwargs)

    store = ResultStore(tmp_path / "killed")
    monkeypatch.setattr(local, "run_trajectory", killed_in_seed_one_level_one)
    with pytest.raises(Killed):
        run(specs, store, quickstart)
    statuses = sorted((r["seed"], r["sparsity"], r["status"]) for r in store.records())
    assert statuses == [(0, 0.5, "done"), (0, 0.75, "done"), (1, 0.5, "running"), (1, 0.75, "running")]
    monkeypatch.undo()
    assert run(specs, store, quickstart) == {"done": 2, "skipped": 2}
    got = {r["key"]: r for r in store.records()}
    want = {r["key"]: r for r in uninterrupted.records()}
    assert got.keys() == want.keys()
    for key, record in want.items():
        assert got[key]["status"] == "done"
        assert got[key]["test_acc"] == record["test_acc"]
        assert got[key]["epochs"] == [dict(e, seconds=g["seconds"]) for e, g in zip(record["epochs"], got[key]["epochs"])]
        assert got[key]["masks"] == record["masks"]
    resumed = [r for r in got.values() if r["seed"] == 1]
    assert all(r["trajectory"]["resumed_from"] == {"level": 1, "epoch": 1} for r in resumed)
