"""Where the leaderboard was before it became the `pai_bench.pages` package.

Kept so that code written against the old module goes on working: it names the pages'
public functions. New code imports `pai_bench.pages`.
"""

from pai_bench.pages import FIGURES, Figure, cut_notes, load_run_records, run_config, run_grid, run_notes, write_leaderboard

__all__ = ["FIGURES", "Figure", "cut_notes", "load_run_records", "run_config", "run_grid", "run_notes", "write_leaderboard"]
