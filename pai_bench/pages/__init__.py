"""What pai-bench publishes: a Markdown page and its plots from trial records.

`write_leaderboard(records, "leaderboard/NAME.md")` picks the page from the records
(`dispatch`): the accuracy page (`accuracy`) for trained trials, the init page (`init`) when
every trial only pruned. Both are laid out from the same pieces: tables (`tables`), the
figure tables beside the accuracy (`figures`), plots (`plots`) and the footer and protocol
text (`footer`). `load_run_records(DIR)` reads a run folder's records as `pai-bench run`
reports them (`records`).

Pages read records and statistics (`pai_bench.stats`); they know nothing of trials being run
(the layer contract in pyproject.toml keeps them from importing the unit of work).
A new section of a page goes in the module of the page it belongs to, or in the shared
modules when both pages show it.
"""

from pai_bench.pages.dispatch import write_leaderboard
from pai_bench.pages.figures import FIGURES, Figure
from pai_bench.pages.records import cut_notes, load_run_records, run_config, run_grid, run_notes

__all__ = ["FIGURES", "Figure", "cut_notes", "load_run_records", "run_config", "run_grid", "run_notes", "write_leaderboard"]
