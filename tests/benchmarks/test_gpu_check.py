"""The one-call GPU check's driver: budgets, the accuracy plan, the targets, the tiny data.

The steps themselves are the benchmark scripts; what must not go wrong on the GPU machine is
the driver around them: a step over its budget is stopped with its workers and what it wrote
is kept, a step that no longer fits is skipped, and the summary says which target was met.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import gpu_check
from gpu_check import Check, Clock, evaluate_targets, extract_tiny, milestones, plan_epochs, run_step


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "zombie" not in state.lower()


def test_a_step_over_its_budget_is_stopped_with_its_workers_and_keeps_what_it_wrote(tmp_path):
    check = Check(tmp_path, Clock(time.time(), total_s=60))
    worker_pid = tmp_path / "worker.pid"
    script = (
        "import json, subprocess, sys, time\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(worker_pid)!r}, 'w').write(str(worker.pid))\n"
        f"open({str(tmp_path / 'throughput.json')!r}, 'w').write(json.dumps({{'ratios': {{'b/a': 3.5}}}}))\n"
        "print('measured (a) and (b)', flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.time()
    status = run_step(check, "throughput", [[sys.executable, "-c", script]], budget=4, minimum=1)
    assert status == "timed out" and time.time() - started < 20
    deadline = time.time() + 5
    while _alive(int(worker_pid.read_text())) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(int(worker_pid.read_text()))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"]["throughput"]["status"] == "timed out"
    assert "measured (a) and (b)" in (tmp_path / "throughput.log").read_text()
    single = next(row for row in summary["targets"] if row["target"].startswith("one trial"))
    assert single["figure"] == "3.50x" and single["verdict"] == "met"

    assert run_step(check, "prune_speed", [[sys.executable, "-c", "raise SystemExit(3)"]], budget=30, minimum=1) == "failed"
    assert run_step(check, "engine_accuracy", [[sys.executable, "-c", "pass"]], budget=30, minimum=10_000) == "skipped"
    steps = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert steps["prune_speed"]["status"] == "failed" and "[3]" in steps["prune_speed"]["reason"]
    assert steps["engine_accuracy"]["status"] == "skipped" and "needs at least 10000 s" in steps["engine_accuracy"]["reason"]
    markdown = (tmp_path / "summary.md").read_text()
    assert "| engine_accuracy | skipped |" in markdown and "| throughput | timed out |" in markdown


THROUGHPUT = {"single": {"images_per_s": 40000.0, "warmup_s": 60.0}, "fp32_loop": {"images_per_s": 10000.0}}


def _needed(plan: dict, epochs: int, seeds: int = 2) -> float:
    return max(plan["fixed_s"][engine] + gpu_check.CONTENTION * seeds * epochs * plan["epoch_s"][engine] for engine in ("fast", "fp32"))


@pytest.mark.parametrize("left", [200.0, 260.0, 400.0])
def test_the_accuracy_plan_is_the_longest_schedule_that_fits(left):
    epochs, plan = plan_epochs(left, THROUGHPUT, 50000, 10000, seeds=2, max_epochs=10, min_epochs=3)
    assert plan["rates_source"] == "measured by the throughput step"
    assert _needed(plan, epochs) <= left
    assert epochs == 10 or _needed(plan, epochs + 1) > left


def test_the_accuracy_plan_gives_up_below_its_minimum_and_assumes_rates_when_none_were_measured():
    assert plan_epochs(120.0, THROUGHPUT, 50000, 10000, seeds=2, max_epochs=10, min_epochs=3)[0] is None  # the compile alone
    epochs, plan = plan_epochs(10_000.0, None, 50000, 10000, seeds=2, max_epochs=10, min_epochs=3)
    assert epochs == 10 and plan["rates_source"] == "assumed"
    # on a CPU both runs train with the reference loop: no compile, the fp32 loop's speed
    _, cpu = plan_epochs(100.0, THROUGHPUT, 50000, 10000, seeds=2, max_epochs=10, min_epochs=1, compiles=False)
    assert cpu["fixed_s"]["fast"] == cpu["fixed_s"]["fp32"] and cpu["epoch_s"]["fast"] == cpu["epoch_s"]["fp32"]


def test_milestones_scale_the_protocols_drops():
    assert milestones(160) == [80, 120] and milestones(10) == [5, 7] and milestones(2) == [1] and milestones(1) == [1]


def test_targets_say_met_missed_by_how_much_or_not_measured():
    figures = {
        "throughput": {
            "ratios": {"b/a": 3.4, "e/a": 1.1, "c4/a": 12.0, "c8/a": 15.0, "d8/a": 21.5},
            "single": {"peak_reserved_gb": 0.9},
            "packed_4": {"trials": 4, "per_trial_peak_reserved_gb": [1.1, 2.3, 1.0, 1.0]},
            "stacked": {"trials": 8, "per_trial_peak_reserved_gb": 0.5},
        },
        "engine_accuracy": {"epochs": 10, "fast": {"accuracy": {"0": 80.0, "1": 80.4}, "engine": ["fast"]}, "fp32": {"accuracy": {"0": 80.5, "1": 80.5}, "engine": ["reference"]},
                            "comparison": {"gap": -0.3, "fast_std": 0.28, "fp32_std": 0.0, "per_seed_difference_std": 0.28}},
        "prune_speed": {"results": [{"method": "px", "rounds": 100, "seconds": 3.2}, {"method": "px:variant=uniform", "rounds": 100, "seconds": 6.0}, {"method": "synflow", "rounds": 100, "seconds": 0.5}]},
        "compile_check": {"rows": [{"augment": "crop-flip", "unique_graphs": 9, "graph_breaks": {"graph_break()": 2}, "cudagraph_skips": 1}]},
    }
    verdicts = {row["target"].split(" ")[0] + " " + row["target"].split(" ")[1]: row for row in evaluate_targets(figures)}
    assert verdicts["one trial"]["verdict"] == "met"
    assert verdicts["aggregate >="]["verdict"] == "met" and "d8/a 21.5x" in verdicts["aggregate >="]["figure"]
    assert verdicts["<= 2"]["verdict"] == "missed by 0.30 GB" and "c4 2.30 GB" in verdicts["<= 2"]["figure"]
    assert verdicts["engines within"]["verdict"] == "met" and "gap -0.30" in verdicts["engines within"]["figure"]
    assert verdicts["PX 100"]["verdict"] == "missed by 1.00 s"
    assert verdicts["compiled crop-flip"]["verdict"].startswith("missed")
    assert verdicts["the engine"]["verdict"] == "met"

    figures["throughput"]["single"]["engine_fallback"] = "BackendCompilerFailed: GPUTooOldForTriton: ..."
    figures["engine_accuracy"]["fast"]["engine_fallbacks"] = ["BackendCompilerFailed: GPUTooOldForTriton: ..."]
    fallback = next(row for row in evaluate_targets(figures) if row["target"].startswith("the engine"))
    assert fallback["verdict"].startswith("missed") and "throughput single: BackendCompilerFailed" in fallback["figure"]
    assert "engine_accuracy: BackendCompilerFailed" in fallback["figure"]

    empty = evaluate_targets({"throughput": None, "engine_accuracy": None, "prune_speed": {"results": [{"method": "px:rounds=2", "rounds": 2, "seconds": 1.0}]}, "compile_check": None})
    assert [row["verdict"] for row in empty] == ["not measured"] * 4 + ["not measured at 100 rounds", "not measured"]


def _jpeg(seed: int) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=generator).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_rehearsal_data_is_a_few_images_per_class_in_the_same_layout(tmp_path):
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split, count in (("test", 3), ("train", 5)):
            for label in ("cat", "dog", "frog"):
                for index in range(count):
                    data = _jpeg(index)
                    info = tarfile.TarInfo(f"{split}/{label}/{index:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    extract_tiny(archive, tmp_path / "tiny", (2, 1))
    counts = {folder.relative_to(tmp_path / "tiny").as_posix(): len(os.listdir(folder)) for folder in (tmp_path / "tiny").glob("*/*")}
    assert counts == {f"{split}/{label}": n for split, n in (("train", 2), ("test", 1)) for label in ("cat", "dog", "frog")}

    from pai_bench.data import load_dataset

    dataset = load_dataset("imagefolder", str(tmp_path / "tiny"))
    assert (len(dataset.train.labels), len(dataset.test.labels), dataset.num_classes) == (6, 3, 3)
