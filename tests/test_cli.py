"""The CLI end to end on the shipped quickstart data: run, resume, results, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pai_bench import plugins
from pai_bench.cli import main
from pai_bench.method import ScoreMethod
from pai_bench.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
FAST = ["suite=quickstart", "train.epochs=1", "data.subset=300", "seeds=2", "sparsities=[0.5,0.9]"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pai_bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_run_then_rerun_skips_finished_trials(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["run", *FAST, "methods=[random,magnitude]", f"out={out}", "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "8 trials" in first and "8 done" in first
    records = ResultStore(out).records()
    assert len(records) == 8 and all(r["status"] == "done" for r in records)
    record = records[0]
    assert record["masks"]["kept"] == round((1 - record["sparsity"]) * record["masks"]["total"])
    assert len(record["epochs"]) == 1 and 0 <= record["test_acc"] <= 100
    # Compute and size: quicknet is 2,802,304 MACs dense; masks keep all its prunable weights' share.
    assert record["macs_dense"] == 2_802_304 and 0 < record["macs"] < record["macs_dense"]
    assert record["speedup"] == record["macs_dense"] / record["macs"]
    assert record["sparsity_prunable"] == 1 - record["masks"]["kept"] / record["masks"]["total"]
    assert record["params"] == record["params_dense"] - (record["masks"]["total"] - record["masks"]["kept"])
    assert record["compression"] == record["params_dense"] / record["params"]
    assert record["train_budget"] == {"ratio": 1.0, "epochs": 1, "milestones": [4]}
    assert record["config"]["train"]["epochs"] == 1 and record["versions"]["torch"]
    assert (out / "results.md").read_text().count("(n=2)") == 4

    assert main(["run", *FAST, "methods=[random,magnitude]", f"out={out}", "--no-progress"]) == 0
    assert "8 skipped" in capsys.readouterr().out
    assert len(ResultStore(out).records()) == 8


class Broken(ScoreMethod):
    """Fails on purpose, as a buggy plugin would."""

    def score(self, model, masks, batches, generator):
        raise RuntimeError("scores exploded")


def run_with_plugin(name: str, method: type, out: Path, monkeypatch) -> dict[str, dict]:
    """`pai-bench run` with `name` registered for this test only, beside magnitude; the
    records by method and sparsity."""
    plugins.load_plugins()  # first, or the built-ins would load into the copy and leave with it
    monkeypatch.setattr(plugins.METHODS, "_entries", dict(plugins.METHODS._entries))
    plugins.register_method(name)(method)
    assert main(["run", *FAST, "seeds=1", f"methods=[{name},magnitude]", f"out={out}", "--no-progress"]) == 0
    return {r["method"] + str(r["sparsity"]): r for r in ResultStore(out).records()}


def test_a_failing_trial_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch, capsys):
    records = run_with_plugin("broken", Broken, tmp_path / "b", monkeypatch)
    assert records["broken0.5"]["status"] == "failed"
    assert "scores exploded" in records["broken0.5"]["error"]
    assert records["magnitude0.9"]["status"] == "done"
    assert "2 failed" in capsys.readouterr().out


class Flat(ScoreMethod):
    """Scores every weight alike and says so, as a method whose signal vanished would."""

    def score(self, model, masks, batches, generator):
        import warnings

        warnings.warn("flat: every score is 0", RuntimeWarning)
        return {name: torch.zeros(mask.shape) for name, mask in masks.items()}


def test_warnings_while_pruning_reach_the_record_the_leaderboard_and_the_user(tmp_path, monkeypatch, capsys):
    out = tmp_path / "f"
    records = run_with_plugin("flat", Flat, out, monkeypatch)
    flat = records["flat0.9"]
    assert flat["warnings"][0] == "flat: every score is 0" and "were drawn at random" in flat["warnings"][1]
    assert flat["masks"]["tie_break"]["share"] == 1.0 and "warnings" not in records["magnitude0.9"]
    assert "2 of the trials warned while pruning" in capsys.readouterr().err
    leaderboard = (out / "leaderboard.md").read_text()
    assert "- **flat**, 2 trials: flat: every score is 0" in leaderboard
    assert "Kept weights chosen by the tie-break" in leaderboard


def test_corrupt_record_is_rerun(tmp_path, capsys):
    out = tmp_path / "c"
    args = ["run", *FAST, "seeds=1", "sparsities=[0.5]", "methods=[magnitude]", f"out={out}", "--no-progress"]
    assert main(args) == 0
    store = ResultStore(out)
    [record] = store.records()
    store.path(record["key"]).write_text("{not json")
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "corrupt record" in captured.err
    assert "1 trials" in captured.out and "1 done" in captured.out
    assert store.read(record["key"])["status"] == "done"


@pytest.mark.parametrize("fmt", ["csv", "md", "json"])
def test_results_formats_lead_with_key_method_sparsity_seed_status_acc(tmp_path, fmt, capsys):
    store = ResultStore(tmp_path)
    store.write({"key": "k1", "status": "done", "method": "snip", "sparsity": 0.9, "seed": 0, "test_acc": 80.5, "sparsity_effective": 0.93, "masks": {"kept": 10, "total": 100}, "macs": 4_000_000, "speedup": 10.2})
    store.write({"key": "k2", "status": "failed", "method": "px", "sparsity": 0.9, "seed": 0, "error": "CUDA OOM"})
    assert main(["results", str(tmp_path), "--format", fmt]) == 0
    text = capsys.readouterr().out
    if fmt == "csv":
        assert text.splitlines()[0].startswith("key,method,sparsity,seed,status,test_acc,sparsity_effective,sparsity_prunable,compression,macs,")
        assert "k2,px,0.9,0,failed,,," in text
        assert "k1,snip,0.9,0,done,80.5,0.93,,,4000000," in text
    elif fmt == "json":
        rows = json.loads(text)
        assert list(rows[0])[:7] == ["key", "method", "sparsity", "seed", "status", "test_acc", "sparsity_effective"]
        assert {row["status"] for row in rows} == {"done", "failed"}
    else:
        assert text.splitlines()[0].replace(" ", "").startswith("|key|method|sparsity|seed|status|test_acc|sparsity_effective|")


def test_list_and_show(capsys):
    assert main(["list", "methods"]) == 0
    assert {"dense", "random", "magnitude"} <= set(capsys.readouterr().out.split())
    assert main(["list", "models"]) == 0
    assert "resnet20" in capsys.readouterr().out.split()
    assert main(["list", "datasets"]) == 0
    assert {"cifar10", "cifar100", "tinyimagenet", "imagefolder", "quickstart"} <= set(capsys.readouterr().out.split())
    assert main(["list", "suites"]) == 0
    assert "quickstart" in capsys.readouterr().out.split()
    assert main(["show", "suite=quickstart", "train.epochs=2"]) == 0
    shown = capsys.readouterr().out
    assert "epochs: 2" in shown and "name: quicknet" in shown


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "suite=nope"], "unknown suite 'nope'; valid choices:"),
        (["run", "suite=quickstart", "methods=[snipp]"], "unknown method 'snipp'; valid choices:"),
        (["run", "suite=quickstart", "model.name=alexnet"], "unknown model 'alexnet'"),
        (["run", "suite=quickstart", "train.epoch=1"], "unknown key 'train.epoch'"),
        (["run", "suite=quickstart", "sparsities=[1.5]"], "sparsity 1.5 is outside [0, 1)"),
        (["run", "suite=quickstart", "epochs"], "malformed override 'epochs'"),
        (["run", "suite=quickstart", "methods=[random"], "malformed override 'methods=[random'"),
        (["list", "gadgets"], "unknown thing to list 'gadgets'; valid choices: datasets, methods, models, suites"),
        (["results", "/nonexistent/run"], "no trial records in /nonexistent/run"),
        (["results", ".", "--format", "xml"], "unknown format 'xml'; valid choices: csv, json, md"),
        (["run", "suite=quickstart", "data.name=cifar10", "data.download=false", "data.root=/nonexistent/cifar"], "cifar-10-python.tar.gz"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


# --- pai-bench leaderboard -------------------------------------------------------------------

LEADERBOARD_RECORDS = ROOT / "tests" / "data" / "leaderboard" / "records.json"


def leaderboard_run(tmp_path: Path) -> Path:
    """A run folder holding the fixed leaderboard records (no config.yaml: every record counts)."""
    store = ResultStore(tmp_path / "run")
    for record in json.loads(LEADERBOARD_RECORDS.read_text()):
        store.write(record)
    return store.root


def test_leaderboard_writes_markdown_and_plot(tmp_path, capsys):
    run = leaderboard_run(tmp_path)
    out = tmp_path / "published" / "cifar.md"
    assert main(["leaderboard", str(run), f"out={out}", "alpha=0.01", "title=CIFAR-10, ResNet-20"]) == 0
    assert f"wrote {out} and {out.with_suffix('.png')} (45 trial records)" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# CIFAR-10, ResNet-20\n") and "α = 0.01" in text and "![test accuracy against remaining weights](cifar.png)" in text
    assert "| synflow " in text and "(n=4, 1 failed)" in text
    assert out.with_suffix(".png").stat().st_size > 0


def test_leaderboard_defaults_to_leaderboard_slash_suite(tmp_path, monkeypatch, capsys):
    run = leaderboard_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", str(run)]) == 0
    assert (tmp_path / "leaderboard" / "toy.md").is_file() and (tmp_path / "leaderboard" / "toy.png").is_file()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["leaderboard", "/nonexistent/run"], "no trial records in /nonexistent/run"),
        (["leaderboard", ".", "outt=x.md"], "unknown leaderboard option 'outt'; valid choices: alpha, out, test, title"),
        (["leaderboard", ".", "test=sign"], "unknown test 'sign'; valid choices: ttest, wilcoxon"),
        (["leaderboard", ".", "alpha=high"], "alpha='high' is not a number"),
    ],
)
def test_leaderboard_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
