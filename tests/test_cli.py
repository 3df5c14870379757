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


def run_with_plugin(name: str, method: type, out: Path, monkeypatch, methods: str = "magnitude", exit_code: int = 0) -> dict[str, dict]:
    """`pai-bench run` with `name` registered for this test only, beside `methods`; the
    records by method and sparsity."""
    plugins.load_plugins()  # first, or the built-ins would load into the copy and leave with it
    monkeypatch.setattr(plugins.METHODS, "_entries", dict(plugins.METHODS._entries))
    plugins.register_method(name)(method)
    methods = f"{name},{methods}" if methods else name
    assert main(["run", *FAST, "seeds=1", f"methods=[{methods}]", f"out={out}", "--no-progress"]) == exit_code
    return {r["method"] + str(r["sparsity"]): r for r in ResultStore(out).records()}


def test_a_failing_trial_is_recorded_the_suite_goes_on_and_the_exit_code_says_so(tmp_path, monkeypatch, capsys):
    records = run_with_plugin("broken", Broken, tmp_path / "b", monkeypatch, exit_code=1)
    assert records["broken0.5"]["status"] == "failed"
    assert "scores exploded" in records["broken0.5"]["error"]
    assert records["magnitude0.9"]["status"] == "done"
    captured = capsys.readouterr()
    assert "2 failed" in captured.out
    assert f"pai-bench: 2 of 4 trials failed; their reasons are in their records (`pai-bench results {tmp_path / 'b'}`" in captured.err


def test_a_run_whose_every_trial_fails_exits_1(tmp_path, monkeypatch, capsys):
    records = run_with_plugin("broken", Broken, tmp_path / "b", monkeypatch, methods="", exit_code=1)
    assert {r["status"] for r in records.values()} == {"failed"} and len(records) == 2
    assert "2 of 2 trials failed" in capsys.readouterr().err


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


def test_corrupt_record_is_rerun_and_said_once(tmp_path, capsys):
    out = tmp_path / "c"
    args = ["run", *FAST, "seeds=1", "sparsities=[0.5]", "methods=[magnitude]", f"out={out}"]
    assert main([*args, "--no-progress"]) == 0
    store = ResultStore(out)
    [record] = store.records()
    store.path(record["key"]).write_text("{not json")
    capsys.readouterr()
    assert main(args) == 0  # with the progress bar: the warning comes before it, once
    captured = capsys.readouterr()
    assert captured.err.count("corrupt record") == 1
    assert captured.err.index("corrupt record") < captured.err.index("trial/s")  # before the bar
    assert "1 trials" in captured.out and "1 done" in captured.out
    assert store.read(record["key"])["status"] == "done"


def test_flags_may_come_anywhere_among_the_overrides(tmp_path, capsys):
    out = tmp_path / "n"
    assert main(["run", "suite=quickstart", "--no-progress", "train.epochs=1", "data.subset=100", "seeds=1", "methods=[magnitude]", "sparsities=[0.5]", f"out={out}"]) == 0
    assert "1 done" in capsys.readouterr().out
    assert ResultStore(out).records()[0]["config"]["train"]["epochs"] == 1
    result = run_cli("run", "suite=quickstart", "--no-such-flag", "train.epochs=1")
    assert result.returncode == 2 and "unrecognized arguments: --no-such-flag" in result.stderr


def test_one_seed_shows_no_spread_in_results_md(tmp_path):
    out = tmp_path / "one"
    assert main(["run", *FAST, "seeds=1", "sparsities=[0.5]", "methods=[magnitude]", f"out={out}", "--no-progress"]) == 0
    summary = (out / "results.md").read_text()
    assert "(n=1)" in summary and "±" not in summary.split("|", 3)[-1]


@pytest.mark.parametrize("fmt", ["csv", "md", "json"])
def test_results_formats_lead_with_key_method_sparsity_seed_status_acc(tmp_path, fmt, capsys):
    store = ResultStore(tmp_path)
    store.write({"key": "k1", "status": "done", "method": "snip", "sparsity": 0.9, "seed": 0, "test_acc": 80.5, "sparsity_effective": 0.93, "masks": {"kept": 10, "total": 100}, "macs": 4_000_000, "speedup": 10.2})
    store.write({"key": "k2", "status": "failed", "method": "px", "sparsity": 0.9, "seed": 0, "error": "CUDA OOM"})
    assert main(["results", str(tmp_path), "--format", fmt]) == 0
    text = capsys.readouterr().out
    if fmt == "csv":
        assert text.splitlines()[0].startswith("key,method,sparsity,seed,status,test_acc,sparsity_effective,row,sparsity_prunable,compression,macs,")
        assert "k2,px,0.9,0,failed,,,px,," in text  # a record from before variants: its row is its method
        assert "k1,snip,0.9,0,done,80.5,0.93,snip,,,4000000," in text
    elif fmt == "json":
        rows = json.loads(text)
        assert list(rows[0])[:8] == ["key", "method", "sparsity", "seed", "status", "test_acc", "sparsity_effective", "row"]
        assert {row["status"] for row in rows} == {"done", "failed"}
    else:
        assert text.splitlines()[0].replace(" ", "").startswith("|key|method|sparsity|seed|status|test_acc|sparsity_effective|row|")


#: The issue's short run: a few rows of one method and its variants, one seed, one sparsity.
ROWS_FAST = ["suite=quickstart", "train.epochs=1", "data.subset=200", "seeds=1", "sparsities=[0.9]", "executor=local", "px.rounds=2"]


def table_rows(markdown: str) -> list[str]:
    """The row labels of the first table in `markdown`."""
    table = markdown.split("\n| ", 1)[1].split("\n\n")[0].splitlines()[2:]
    return [line.split("|")[1].strip() for line in table]


def test_variants_are_rows_and_renaming_one_reruns_nothing(tmp_path, capsys):
    out = tmp_path / "rows"
    assert main(["run", *ROWS_FAST, "methods=[snip,snip-train,px,px-uniform]", f"out={out}", "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "4 trials" in first and "4 done" in first
    records = {r["row"]: r for r in ResultStore(out).records()}
    assert {row: (r["method"], r["options"]) for row, r in records.items()} == {
        "snip": ("snip", {"bn_mode": "eval", "rounds": 1}),
        "snip-train": ("snip", {"bn_mode": "train", "rounds": 1}),
        "px": ("px", {"rounds": 2, "variant": "authors", "dtype": "auto"}),
        "px-uniform": ("px", {"rounds": 2, "variant": "uniform", "dtype": "auto"}),
    }
    assert all(r["config"]["row"] == row and r["status"] == "done" for row, r in records.items())
    assert sorted(table_rows((out / "leaderboard.md").read_text())) == ["px", "px-uniform", "snip", "snip-train"]
    assert sorted(table_rows((out / "results.md").read_text())) == ["px", "px-uniform", "snip", "snip-train"]

    # The same trials under other row names: nothing runs, and every report uses the new names.
    renamed = ["methods=[snip,bn-train,px,pk-eval]", "variants.bn-train={method: snip, bn_mode: train}", "variants.pk-eval={method: px, variant: uniform}"]
    assert main(["run", *ROWS_FAST, *renamed, f"out={out}", "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert "4 trials" in second and "4 skipped" in second and "done" not in second.split("\n")[0]
    assert sorted(table_rows((out / "leaderboard.md").read_text())) == ["bn-train", "pk-eval", "px", "snip"]
    assert main(["results", str(out), "--format", "json"]) == 0
    assert sorted(row["row"] for row in json.loads(capsys.readouterr().out)) == ["bn-train", "pk-eval", "px", "snip"]
    assert main(["leaderboard", str(out), f"out={tmp_path / 'lb.md'}"]) == 0
    assert sorted(table_rows((tmp_path / "lb.md").read_text())) == ["bn-train", "pk-eval", "px", "snip"]


def test_list_methods_of_a_suite_shows_its_rows(capsys):
    assert main(["list", "methods", "suite=quickstart", "methods=[snip,snip-train,px-uniform]", "px.rounds=5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["snip", "snip"] and lines[1].split() == ["options:", "bn_mode=eval", "rounds=1"]
    assert lines[2].split() == ["snip-train", "snip", "with", "bn_mode=train"]
    assert lines[4].split() == ["px-uniform", "px", "with", "variant=uniform"]
    assert lines[5].split() == ["options:", "rounds=5", "variant=uniform", "dtype=auto"]
    assert main(["list", "methods", "suite=quickstart"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(variants defined but not in methods: snip-train, px-uniform, px-2024)"


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
        (["run", "suite=quickstart", "variants.x.method=snipp", "methods=[x]"], "unknown base method of variant 'x' 'snipp'; valid choices:"),
        (["run", "suite=quickstart", "variants.px-uniform.rounds=many"], "bad option for px"),
        (["run", "suite=quickstart", "methods=[snip,snip-eval]", "variants.snip-eval={method: snip, bn_mode: eval}"], "rows 'snip' and 'snip-eval' are the same trials"),
        (["list", "methods", "suite=quickstart", "methods=[px-unifrom]"], "unknown method 'px-unifrom'; valid choices:"),
        (["list", "models", "suite=quickstart"], "list models takes no key=value"),
        (["results", "/nonexistent/run"], "no trial records in /nonexistent/run"),
        (["results", ".", "--format", "xml"], "unknown format 'xml'; valid choices: csv, json, md"),
        (["run", "suite=quickstart", "data.name=cifar10", "data.download=false", "data.root=/nonexistent/cifar"], "cifar-10-python.tar.gz"),
        (["run", "suite=quickstart", "sparsities=0.9"], "sparsities=0.9: a list is expected, e.g. sparsities=[0.9]"),
        (["run", "suite=quickstart", "train.lr=-1"], "train.lr=-1.0: expected a learning rate of 0 or more"),
        (["run", "suite=quickstart", "methods=[magnitude]", "sparsities=[0.9999999]"], "sparsity 0.9999999 keeps round((1 - s) * N) = 0 of the N = 24,112"),
        (["run", "suite=quickstart", "out=/proc/pai-bench-out"], "cannot create out=/proc/pai-bench-out"),
        (["run", "suite=quickstart", f"out={__file__}"], "is a file, not a folder"),
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


def test_leaderboard_defaults_to_the_run_folder_not_the_working_directory(tmp_path, monkeypatch, capsys):
    run = leaderboard_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", str(run)]) == 0
    assert (run / "leaderboard.md").is_file() and (run / "leaderboard.png").is_file()
    assert not (tmp_path / "leaderboard").exists()


def test_leaderboard_title_reaches_the_plot(tmp_path):
    run = leaderboard_run(tmp_path)
    assert main(["leaderboard", str(run), f"out={tmp_path / 'plain.md'}"]) == 0
    assert main(["leaderboard", str(run), f"out={tmp_path / 'titled.md'}", "title=CIFAR-10, ResNet-20"]) == 0
    plain, titled = (tmp_path / "plain.png").read_bytes(), (tmp_path / "titled.png").read_bytes()
    assert plain != titled


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["leaderboard", "/nonexistent/run"], "/nonexistent/run does not exist; pass the out= folder of a run or a records archive"),
        (["leaderboard", ".", "outt=x.md"], "unknown leaderboard option 'outt'; valid choices: alpha, out, records, test, title"),
        (["leaderboard", ".", "test=sign"], "unknown test 'sign'; valid choices: ttest, wilcoxon"),
        (["leaderboard", ".", "alpha=high"], "alpha='high' is not a number"),
    ],
)
def test_leaderboard_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def test_leaderboard_into_a_folder_it_cannot_write_is_one_line_and_exit_2(tmp_path):
    run = leaderboard_run(tmp_path)
    result = run_cli("leaderboard", str(run), "out=/proc/pai-bench/x.md")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "cannot write the leaderboard /proc/pai-bench/x.md" in line


def test_a_second_run_on_an_out_in_use_is_refused_before_it_runs_anything(tmp_path):
    from tests.runner.test_lock import hold_in_another_process

    holder = hold_in_another_process(tmp_path)
    try:
        result = run_cli("run", *FAST, "methods=[magnitude]", f"out={tmp_path}")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"is in use by another pai-bench run (pid {holder.pid} on " in line
    assert not (tmp_path / "trials").exists()



def test_a_config_that_no_longer_loads_is_said_once(tmp_path):
    run = leaderboard_run(tmp_path)
    (run / "config.yaml").write_text("methods: [no-such-method]\n")
    result = run_cli("leaderboard", str(run), f"out={tmp_path / 'page.md'}")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "does not load" in line]
    assert len(notes) == 1 and "using every record" in notes[0]
