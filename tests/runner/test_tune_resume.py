"""Kill the driver (SIGKILL) mid-suite and run the same command again: the finished trial is
skipped, the unfinished one resumes from its last checkpoint, no record is lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = [
    "suite=quickstart", "executor=tune", "data.subset=200", "train.epochs=6", "seeds=1", "sparsities=[0.5]",
    "methods=[random,magnitude]", "checkpoint_every=1", "ray.max_concurrent=1",
]  # fmt: skip
# The driver starts its own small Ray (the object store sized down for a test machine).
ENV = {**os.environ, "RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION": "0.01"}


def records(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "trials").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except ValueError:  # cannot happen with atomic writes; a test of that too
            raise AssertionError(f"torn record {path}") from None
        found[record["method"]] = record
    return found


def test_killed_driver_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pai_bench", "run", *SUITE, f"out={out}", "--no-progress"]
    # Its own session: the driver's Ray processes share its group, which the test cleans up.
    driver = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # One trial at a time, in grid order: kill once the first is done and the second has
        # checkpointed at least one of its six epochs (leaving five epochs' time to kill it in).
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            found = records(out) if (out / "trials").is_dir() else {}
            if found.get("random", {}).get("status") == "done" and found.get("magnitude", {}).get("checkpoint"):
                break
            time.sleep(0.05)
        assert driver.poll() is None, f"the run ended before it could be killed:\n{driver.stdout.read().decode()}"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        _end_group(driver.pid)
    before = records(out)
    assert before["random"]["status"] == "done"
    assert before["magnitude"]["status"] == "running"
    epoch = before["magnitude"]["checkpoint"]["epoch"]
    assert 1 <= epoch < 6

    again = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 trials" in again.stdout and "1 done, 1 skipped" in again.stdout
    after = records(out)
    assert sorted(path.name for path in (out / "trials").iterdir()) == sorted(f"{r['key']}.json" for r in after.values())
    assert after["random"] == before["random"]  # skipped, untouched
    resumed = after["magnitude"]
    assert resumed["status"] == "done" and resumed["resumed_from_epoch"] == epoch
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3, 4, 5, 6]
    assert not list((out / "ray").glob("*/*/checkpoint_*"))  # done trials keep no checkpoint


def _end_group(group: int) -> None:
    """SIGKILL what is left of the killed driver's process group (Ray's agents outlive it)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
