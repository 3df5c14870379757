"""Keep decoded folder datasets on disk so only the first load pays for decoding.

The cache sits next to the data (`<folder>/.pai-bench-cache/<name>.pt`) and stores the key it
was built for: a hash of the folder's path and the size and mtime of every file read. Any added,
removed or rewritten file changes the key and the tensors are rebuilt, overwriting the stale
file, so there is nothing to invalidate by hand.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pai_bench.atomic import atomic_write
from pai_bench.errors import UserError

FORMAT = 1
"""Bumped when what is cached changes (e.g. how images are decoded), to retire old caches."""

Content = dict[str, object]


def cached(
    folder: Path, name: str, sources: Sequence[Path], build: Callable[[], Content]
) -> Content:
    """`build()`'s result for `sources` under `folder`, from the cache when it is current.

    `name` tells apart the variants of one folder (e.g. different image sizes). `build` must
    return what `torch.load(weights_only=True)` can read back: tensors, str, numbers, lists.
    """
    path = folder / ".pai-bench-cache" / f"{name}.pt"
    key = _fingerprint(folder, name, sources)
    content = _read(path, key)
    if content is None:
        content = build()
        _write(path, {**content, "key": key})
    return content


def _fingerprint(folder: Path, name: str, sources: Sequence[Path]) -> str:
    digest = hashlib.sha256(f"{FORMAT}\0{folder.resolve()}\0{name}".encode())
    for source in sources:
        try:
            stat = source.stat()
        except FileNotFoundError:
            raise UserError(f"{source} is listed in {folder} but missing") from None
        relative = os.path.relpath(source, folder)
        digest.update(f"\0{relative}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _read(path: Path, key: str) -> Content | None:
    if not path.is_file():
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a cache that cannot be read, for whatever reason, is rebuilt
        warnings.warn(f"ignoring unreadable cache {path}; rebuilding it", stacklevel=3)
        return None
    if not isinstance(content, dict) or content.get("key") != key:
        return None
    del content["key"]
    return content


def _write(path: Path, content: Content) -> None:
    # Whole or not at all, so a crash or a concurrent reader never sees half a file.
    try:
        with atomic_write(path, "wb") as stream:
            torch.save(content, stream)
    except OSError as error:
        warnings.warn(
            f"cannot cache decoded images in {path} ({error}); the next load decodes them again",
            stacklevel=3,
        )
