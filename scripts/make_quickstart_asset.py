"""Rebuild `pai_bench/data/assets/cifar10-mini.tar.gz`, the dataset the quickstart runs on offline.

    python scripts/make_quickstart_asset.py /work/shared/data/cifar10-jpeg.tar.gz

The source is CIFAR-10 as 32x32 JPEGs in ImageFolder layout (`train/<class>/*.jpg`,
`test/<class>/*.jpg`). The first 200 train and 50 test files of each class, in sorted filename
order, are copied byte for byte (no re-encoding, so the pixels are the source's) into a tarball
with the same layout. Member metadata and the gzip header are fixed, so the same source gives the
same bytes and a rebuild shows no spurious diff.
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

PER_CLASS = {"train": 200, "test": 50}
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent / "pai_bench/data/assets/cifar10-mini.tar.gz"
)


def select(members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The first PER_CLASS[split] files of each split/class, in sorted filename order."""
    groups: dict[tuple[str, str], list[tarfile.TarInfo]] = defaultdict(list)
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.isfile() and len(parts) == 3 and parts[0] in PER_CLASS:
            groups[parts[0], parts[1]].append(member)
    chosen = []
    for (split, label), group in sorted(groups.items()):
        group.sort(key=lambda member: member.name)
        if len(group) < PER_CLASS[split]:
            raise SystemExit(f"{split}/{label} has only {len(group)} files")
        chosen.extend(group[: PER_CLASS[split]])
    return chosen


def build(source: Path, output: Path) -> None:
    with tarfile.open(source, "r:gz") as archive:
        chosen = select(archive.getmembers())
        # Read in archive order so the gzip stream is only ever read forward.
        payload = {
            member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in sorted(chosen, key=lambda member: member.offset)
        }
    output.parent.mkdir(parents=True, exist_ok=True)
    with (
        output.open("wb") as raw,
        gzip.GzipFile("", "wb", 9, raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.USTAR_FORMAT) as archive,
    ):
        for name in sorted(payload):
            info = tarfile.TarInfo(name)
            info.size = len(payload[name])
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(payload[name]))
    print(f"wrote {output}: {len(payload)} images, {output.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="CIFAR-10 JPEG tarball in ImageFolder layout")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    build(args.source, args.output)


if __name__ == "__main__":
    main()
