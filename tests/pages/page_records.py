"""Records the page tests share: a fixed result set, and a page written from records with a
fixed version and date (so the same records give the same file)."""

from __future__ import annotations

import json
from pathlib import Path

from pai_bench.pages import write_leaderboard

DATA = Path(__file__).parents[1] / "data" / "leaderboard"


def fixed_records() -> list[dict]:
    """ResNet-20 / CIFAR-10 shaped records: dense, SynFlow, SNIP, SNIP with shuffled masks and
    random at 90 and 99 % over 5 seeds, with one diverged SNIP and one failed random trial."""
    return json.loads((DATA / "records.json").read_text())


def write(records, path, **options):
    return write_leaderboard(records, path, version="0.1.0", date="2025-01-01", **options)
