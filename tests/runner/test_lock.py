"""One run per results folder: a kernel lock that a killed holder releases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pai_bench.errors import UserError
from pai_bench.runner.lock import run_lock

HOLD = """
import sys, time
from pathlib import Path
from pai_bench.runner.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_in_another_process(out: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_is_refused_with_the_holder_named_and_a_killed_holder_frees_it(tmp_path):
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(UserError, match=rf"out={tmp_path} is in use by another pai-bench run \(pid {holder.pid} on ") as caught:
            with run_lock(tmp_path):
                pass
        assert "\n" not in str(caught.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with run_lock(tmp_path):
        pass


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(UserError, match="in use by another pai-bench run"):
            with run_lock(tmp_path):
                pass
    holder = hold_in_another_process(tmp_path)  # would stop at the lock if the run kept it
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
