"""Files written whole or not at all: a temporary file beside the target, renamed over it.

A process killed mid-write (SIGKILL, a lost node, a full disk) leaves the previous file whole
and at most a temporary file, which readers skip and the next run deletes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: How a file being written is named until it is whole.
TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A stream to write `path` with (`mode` "w" or "wb"); the file appears when the block
    ends without an error, synced to disk, and not otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=path.suffix)
    try:
        with os.fdopen(handle, mode) as stream:
            # mkstemp makes the file private (0600); the file it becomes is an ordinary output,
            # readable as the user's umask allows (on shared storage, by the user's team).
            os.fchmod(stream.fileno(), 0o666 & ~current_umask())
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def is_partial_write(path: Path) -> bool:
    return path.name.startswith(TEMPORARY_PREFIX)


def remove_partial_writes(folder: str | Path) -> None:
    """Delete what killed writes left in `folder`: only while nothing writes there (a run
    calls it as it starts, before its trials)."""
    for path in Path(folder).glob(f"{TEMPORARY_PREFIX}*"):
        path.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux's
    /proc/self/status), since setting it even briefly races with other threads' files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
