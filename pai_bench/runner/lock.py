"""One run per results folder at a time.

Two `pai-bench run` on one `out` would both run every unfinished trial (twice the compute),
and one's `running` record could overwrite the other's finished one. The guard is an OS file
lock (`flock`) on `<out>/.lock`: the kernel drops it when its process exits, however it dies
(Ctrl-C, SIGKILL, a lost node), so a killed run never leaves a stale lock behind. The file
says who holds it, so the refusal can name the other run. Under Ray the driver holds it; the
trial workers never write `out`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pai_bench.errors import UserError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold `out`'s lock for the block, or raise a UserError naming the run that holds it."""
    path = out / LOCK_FILE
    try:
        handle = open(path, "a+")
    except OSError as error:
        raise UserError(f"cannot write in out={out}: {error.strerror}; choose a folder you can write") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"out={out} is in use by another pai-bench run ({_holder(handle)}); wait for it to end, "
                "or give this run another out="
            ) from None
        handle.seek(0)
        handle.truncate()
        holder = {"pid": os.getpid(), "host": platform.node(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        handle.write(json.dumps(holder))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(handle) -> str:
    handle.seek(0)
    try:
        holder = json.loads(handle.read())
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}: {holder['command']}"
    except (ValueError, KeyError, TypeError):
        return "it is starting"
