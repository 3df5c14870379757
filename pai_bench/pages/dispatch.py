"""Which page a set of records gets: the init page when every trial only pruned
(`train.epochs=0`: masks at initialisation, no accuracy), else the accuracy page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date as _date
from pathlib import Path
from typing import Any

from pai_bench import stats
from pai_bench.errors import UserError, unknown_choice
from pai_bench.pages.accuracy import _write_files
from pai_bench.pages.init import write_init_leaderboard
from pai_bench.version import __version__


def write_leaderboard(
    records: Sequence[Mapping[str, Any]],
    out_md: str | Path,
    *,
    alpha: float = stats.ALPHA,
    paired_test: str = "ttest",
    title: str | None = None,
    version: str | None = None,
    date: str | None = None,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write the leaderboard of `records` (trial records, any status) to `out_md` and its plot
    beside it (same name, `.png`); return both paths. The per-layer density plots go beside
    them too (`layer_plot_path`), one per table whose records have per-layer mask figures.
    `notes` are lines for the footer (what a suite cut to fit, `run_notes`).

    `version` and `date` default to this pai-bench's version and today (ISO); pass them to
    get a byte-identical file from the same records.
    """
    records = list(records)
    if not records:
        raise UserError(f"no trial records to make the leaderboard {out_md} from")
    if paired_test not in stats.PAIRED_TESTS:
        raise unknown_choice("test", paired_test, stats.PAIRED_TESTS)
    if not 0.0 < alpha < 1.0:
        raise UserError(f"alpha={alpha} is outside (0, 1)")
    out_md = Path(out_md)
    try:
        if all(stats.is_prune_only(record) for record in records):
            # Prune-only trials have no accuracy: their page is the masks at initialisation.
            return write_init_leaderboard(
                records, out_md, title=title, version=version or __version__, date=date or _date.today().isoformat(), notes=notes
            )
        analysis = stats.analyse(records, alpha=alpha, paired_test=paired_test)
        return _write_files(analysis, records, out_md, title, version, date, notes)
    except OSError as error:
        raise UserError(f"cannot write the leaderboard {out_md}: {error.strerror or error}; choose a folder you can write") from None
