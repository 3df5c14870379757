"""A published page's records: packed beside it, and read back to regenerate it.

A number in a published leaderboard is only as good as the records it was computed from, so
`pai-bench leaderboard DIR out=leaderboard/NAME.md records=leaderboard/NAME.records.tar.xz`
packs the run's grid (`config.yaml`, with its cuts) and exactly the trial records the page
reports into one archive, and `pai-bench leaderboard leaderboard/NAME.records.tar.xz` writes
the page again from it. The archive is byte-for-byte the same for the same records (sorted
members, no timestamps or owners), so republishing unchanged results changes no file.
"""

from __future__ import annotations

import io
import lzma
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pai_bench.errors import UserError

ARCHIVE_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz")
RECORDS_SUFFIX = ".records.tar.xz"


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


@contextmanager
def run_folder(path: Path) -> Iterator[Path]:
    """`path` as a run folder: itself, or a records archive unpacked into a temporary one."""
    if path.is_dir():
        yield path
        return
    if not path.exists():
        raise UserError(f"{path} does not exist; pass the out= folder of a run or a records archive ({', '.join(ARCHIVE_SUFFIXES)})")
    if not is_archive(path):
        raise UserError(f"{path} is neither a run folder nor a records archive ({', '.join(ARCHIVE_SUFFIXES)})")
    with tempfile.TemporaryDirectory(prefix="pai-bench-records-") as folder:
        try:
            with tarfile.open(path) as archive:
                archive.extractall(folder, filter="data")
        except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as error:
            reason = str(error).splitlines()[0].rstrip(":")
            raise UserError(f"cannot read the records archive {path} ({reason}); publish one with `pai-bench leaderboard DIR records=...`") from None
        yield Path(folder)


def default_page(path: Path) -> Path:
    """Where `pai-bench leaderboard PATH` writes without `out=`: DIR/leaderboard.md for a run
    folder, NAME.md beside NAME.records.tar.xz for an archive."""
    if not is_archive(path):
        return path / "leaderboard.md"
    name = path.name
    for suffix in (RECORDS_SUFFIX, *ARCHIVE_SUFFIXES):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name}.md")


def pack_records(run_dir: Path, records: Sequence[Mapping[str, Any]], archive: Path) -> int:
    """Write `run_dir`'s config.yaml and the stored files of `records` (those with a file:
    not the `missing` placeholders) to `archive` (.tar.xz); return how many records it holds."""
    if not archive.name.endswith(".tar.xz"):
        raise UserError(f"records={archive} must name a .tar.xz archive, e.g. records=leaderboard/NAME{RECORDS_SUFFIX}")
    members = {}
    config = run_dir / "config.yaml"
    if config.is_file():
        members["config.yaml"] = config.read_bytes()
    for record in records:
        path = run_dir / "trials" / f"{record['key']}.json"
        if record.get("status") != "missing" and path.is_file():
            members[f"trials/{record['key']}.json"] = path.read_bytes()
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:xz", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(members):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
                tar.addfile(info, io.BytesIO(members[name]))
    except OSError as error:
        raise UserError(f"cannot write records={archive}: {error.strerror or error}") from None
    return len(members) - (1 if config.is_file() else 0)
