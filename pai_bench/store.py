"""The results store: one JSON record per trial, the single source of truth of a run.

Records are written atomically (a temporary file renamed over the old one), so a killed run
leaves each record either whole or absent. A record that does not parse is reported and its
trial runs again; it never stops a suite.

Beside the records, `<root>/masks/<key>.pt` keeps the masks a trajectory method (imp) reached
at each sparsity: its ablated trials (shuffle, reinit) start from them.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from pai_bench.atomic import atomic_write, is_partial_write

#: Outcomes that rerunning would not change; other records (failed, running) are run again.
FINAL_STATUSES = ("done", "diverged")
STATUSES = ("done", "failed", "diverged", "running")

T = TypeVar("T")


class ResultStore:
    """`<root>/trials/<key>.json` for every trial of a run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.trials = self.root / "trials"

    def path(self, key: str) -> Path:
        return self.trials / f"{key}.json"

    def write(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=1, sort_keys=True, default=_jsonable)
        with atomic_write(self.path(record["key"])) as stream:
            stream.write(text)

    def read(self, key: str) -> dict[str, Any] | None:
        """The record of `key`, or None when there is none or it is corrupt (then reported)."""
        path = self.path(key)
        if not path.exists():
            return None
        return _load(path)

    def is_final(self, key: str) -> bool:
        record = self.read(key)
        return record is not None and record.get("status") in FINAL_STATUSES

    def unfinished(self, specs: Iterable[T]) -> list[T]:
        """The specs (anything with a `key`) whose trial has no final record: what a run does."""
        return [spec for spec in specs if not self.is_final(spec.key)]

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    def masks_path(self, key: str) -> Path:
        return self.masks / f"{key}.pt"

    def write_masks(self, key: str, masks: dict[str, torch.Tensor]) -> None:
        with atomic_write(self.masks_path(key), "wb") as stream:
            stream.write(masks_to_bytes(masks))

    def read_masks(self, key: str) -> dict[str, torch.Tensor] | None:
        """The masks kept for `key`, or None when there are none (or they do not load)."""
        path = self.masks_path(key)
        if not path.is_file():
            return None
        try:
            return masks_from_bytes(path.read_bytes())
        except Exception as error:  # unreadable: the trial that needs them fails and says so
            print(f"warning: cannot read masks {path} ({type(error).__name__}: {error})", file=sys.stderr)
            return None

    def records(self) -> list[dict[str, Any]]:
        return [record for record in self._iter_records() if record is not None]

    def _iter_records(self) -> Iterator[dict[str, Any] | None]:
        if not self.trials.is_dir():
            return
        for path in sorted(self.trials.glob("*.json")):
            if not is_partial_write(path):
                yield _load(path)


def masks_to_bytes(masks: dict[str, torch.Tensor]) -> bytes:
    """Bool masks as bytes, eight entries a byte (a VGG-16's masks in 2 MB, not 15)."""
    packed = {name: (torch.from_numpy(np.packbits(mask.cpu().numpy().reshape(-1))), list(mask.shape)) for name, mask in masks.items()}
    buffer = io.BytesIO()
    torch.save(packed, buffer)
    return buffer.getvalue()


def masks_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    packed = torch.load(io.BytesIO(data), weights_only=True)
    masks = {}
    for name, (bits, shape) in packed.items():
        count = int(np.prod(shape))
        masks[name] = torch.from_numpy(np.unpackbits(bits.numpy(), count=count).astype(bool)).reshape(shape)
    return masks


#: Corrupt records already reported by this process, with the size and time they had: a run
#: reads a record several times (what to run, the progress, the reports), and a problem is
#: said once, before the progress bar, not once per read.
_reported: set[tuple[str, int, int]] = set()


def _load(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "key" not in record or "status" not in record:
            raise ValueError("not a trial record")
        return record
    except (OSError, ValueError) as error:
        _report_corrupt(path, error)
        return None


def _report_corrupt(path: Path, error: Exception) -> None:
    try:
        stat = path.stat()
        identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        identity = (str(path), -1, -1)
    if identity in _reported:
        return
    _reported.add(identity)
    print(f"warning: corrupt record {path} ({error}); its trial will run again", file=sys.stderr)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a trial record")
