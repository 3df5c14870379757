"""Trial checkpoints as files: what the executors hand a trial as its `CheckpointHook`.

A checkpoint is one `torch.save` file, written to a temporary name and renamed over the old
one, so a process killed mid-write leaves the previous checkpoint whole. One that cannot be
read is reported and the trial starts over: a checkpoint saves time, it is never needed for a
correct result.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pai_bench.atomic import atomic_write

#: The file inside a checkpoint folder (Ray Tune's checkpoints are folders).
STATE_FILE = "state.pt"


def read_state(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None (reported) if it is missing or unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file means: start the trial over
        print(f"warning: cannot read checkpoint {path} ({type(error).__name__}: {error}); the trial starts over", file=sys.stderr)
        return None


def write_state(state: dict[str, Any], path: str | Path) -> None:
    """`torch.save(state, path)`, atomically."""
    with atomic_write(path, "wb") as stream:
        torch.save(state, stream)


def read_checkpoint(location: str | Path) -> dict[str, Any] | None:
    """A local checkpoint: a file, or a folder holding `STATE_FILE` (a Tune checkpoint)."""
    path = Path(location)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        print(f"warning: checkpoint {path} is gone; the trial starts over", file=sys.stderr)
        return None
    return read_state(path)


class FileCheckpoint:
    """A trial's latest checkpoint in one file (the local executor's hook).

    `resume_from` is where an earlier run left this trial's checkpoint (a file, or a Tune
    checkpoint folder on this machine), read when `path` holds none yet; `on_save` hears of
    each state saved, after it is on disk.
    """

    def __init__(
        self,
        path: str | Path,
        every: int,
        resume_from: str | None = None,
        on_save: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.every = every
        self.resume_from = resume_from
        self.on_save = on_save

    def load(self) -> dict[str, Any] | None:
        if self.path.is_file():
            return read_state(self.path)
        if self.resume_from is not None:
            return read_checkpoint(self.resume_from)
        return None

    def save(self, state: dict[str, Any]) -> None:
        write_state(state, self.path)
        if self.on_save is not None:
            self.on_save(state)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def resume_point(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where an unfinished trial's record says its latest checkpoint is: `{"path", "epoch"}`.

    Running records carry it (the executor updates it at every checkpoint), and so do failed
    ones, so that rerunning a failed trial resumes it too.
    """
    if record is None or record.get("status") not in ("running", "failed"):
        return None
    point = record.get("checkpoint")
    return dict(point) if isinstance(point, dict) and point.get("path") else None
