"""`pai-bench`: run suites, list what is registered, show configs, tabulate results.

Bad input is a `UserError`: one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pai_bench.errors import UserError, unknown_choice

LISTABLE = ("methods", "suites", "models", "datasets")
#: `pai-bench leaderboard DIR key=value`: out (the .md path; the .png goes beside it), alpha,
#: test (the paired test: ttest | wilcoxon), title, records (a .tar.xz to pack the page's
#: records into, for publishing: `pai_bench.publish`).
LEADERBOARD_OPTIONS = ("out", "alpha", "test", "title", "records")


#: Exit codes: 0 every trial of the grid done (or diverged, which is a result), 1 some trial
#: failed (the summary says how many and where the reasons are), 2 bad input, 130 interrupted.
EXIT_TRIALS_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = _parse(parser, sys.argv[1:] if argv is None else argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"pai-bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pai-bench: interrupted; finished trials are saved, rerun the same command to resume", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pai-bench", description="Benchmark pruning-at-initialization methods.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a suite: pai-bench run suite=quickstart [key=value ...]")
    run.add_argument("overrides", nargs="*", metavar="key=value")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    listing = commands.add_parser(
        "list", help=f"list registered {', '.join(LISTABLE)}; `list methods suite=NAME [key=value ...]`: the suite's rows"
    )
    listing.add_argument("what", metavar="WHAT", help=" | ".join(LISTABLE))
    listing.add_argument("overrides", nargs="*", metavar="key=value", help="with methods: a suite and overrides, to list its rows")
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="print the resolved config of a suite as YAML")
    show.add_argument("overrides", nargs="*", metavar="key=value")
    show.set_defaults(handler=_show)

    results = commands.add_parser("results", help="one row per trial of a run folder")
    results.add_argument("dir", type=Path)
    results.add_argument("--format", default="md", help="csv | md | json")
    results.set_defaults(handler=_results)

    leaderboard = commands.add_parser(
        "leaderboard",
        help="the publishable leaderboard (Markdown + PNG) of a run folder or a records archive: "
        "pai-bench leaderboard DIR|NAME.records.tar.xz [out=DIR/leaderboard.md] [records=NAME.records.tar.xz]",
    )
    leaderboard.add_argument("dir", type=Path)
    leaderboard.add_argument("options", nargs="*", metavar="key=value", help=f"{', '.join(LEADERBOARD_OPTIONS)}")
    leaderboard.set_defaults(handler=_leaderboard)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Flags may come anywhere among a command's `key=value` overrides
    (`pai-bench run suite=cifar10 --no-progress seeds=1`), which argparse alone refuses."""
    args, extra = parser.parse_known_args(argv)
    flags = [item for item in extra if item.startswith("-")]
    if flags or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
    if extra:
        args.overrides += extra
    return args


def _config(overrides: list[str]):
    from pai_bench.config import load_config, parse_overrides

    suite, rest = parse_overrides(overrides)
    return load_config(suite, rest)


def _run(args: argparse.Namespace) -> int:
    from pai_bench.runner import run_suite

    config = _config(args.overrides)
    summary = run_suite(config, progress=not args.no_progress)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items())) or "nothing to do"
    print(f"{summary.trials} trials in {summary.out}: {counts}")
    print(summary.summary_path.read_text())
    print(f"leaderboard with significance tests: {summary.leaderboard_path} (and its .png)")
    if summary.reported > summary.trials:
        print(f"the reports cover {summary.reported} trials of this protocol in {summary.out}: this run's {summary.trials} and earlier ones (grid in {summary.out / 'config.yaml'})")
    if summary.replaced:
        print(
            f"pai-bench: note: {summary.replaced} finished trials of an earlier protocol or options in {summary.out} are not in these "
            f"reports (their records stay in trials/); `pai-bench run suite={summary.previous_config}` reports them again",
            file=sys.stderr,
        )
    if summary.warned:
        print(f"pai-bench: {summary.warned} of the trials warned while pruning; {summary.leaderboard_path} lists the warnings", file=sys.stderr)
    if summary.counts.get("unfinished"):
        print("pai-bench: the run stopped early; rerun the same command to resume it", file=sys.stderr)
    failed = summary.counts.get("failed", 0)
    if failed:
        print(
            f"pai-bench: {failed} of {summary.trials} trials failed; their reasons are in their records "
            f"(`pai-bench results {summary.out}`, column error) and the leaderboard; rerunning the command retries them",
            file=sys.stderr,
        )
    return EXIT_TRIALS_FAILED if failed or summary.counts.get("unfinished") else 0


def _list(args: argparse.Namespace) -> int:
    from pai_bench.data import list_datasets
    from pai_bench.listing import methods_listing, rows_listing, suites_listing
    from pai_bench.models import list_models

    listers = {
        "methods": methods_listing,
        "suites": suites_listing,
        "models": lambda: "\n".join(list_models()),
        "datasets": lambda: "\n".join(list_datasets()),
    }
    if args.what not in listers:
        raise unknown_choice("thing to list", args.what, LISTABLE)
    if args.overrides and args.what != "methods":
        raise UserError(f"list {args.what} takes no key=value; only `list methods suite=NAME` lists a suite's rows")
    print(rows_listing(_config(args.overrides)) if args.overrides else listers[args.what]())
    return 0


def _show(args: argparse.Namespace) -> int:
    from pai_bench.config import to_yaml
    from pai_bench.grid import expand_grid
    from pai_bench.trajectory import cost_lines

    config = _config(args.overrides)
    print(to_yaml(config), end="")
    # What a trajectory method (imp) will train: its masks cost training, unlike PaI's.
    for line in cost_lines(expand_grid(config)):
        print(line)
    return 0


def _results(args: argparse.Namespace) -> int:
    from pai_bench.pages import run_grid
    from pai_bench.report import FORMATS, format_results, results_frame
    from pai_bench.store import ResultStore
    from pai_bench.variants import label_rows

    if args.format not in FORMATS:
        raise unknown_choice("format", args.format, FORMATS)
    store = ResultStore(args.dir)
    if not store.trials.is_dir():
        raise UserError(f"no trial records in {args.dir} (expected {store.trials}); pass the out= folder of a run")
    # Every record, each named by its row in the run's config (a variant may have been renamed).
    records = label_rows(store.records(), run_grid(args.dir) or [])
    print(format_results(results_frame(records), args.format))
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from pai_bench.pages import load_run_records, run_notes, write_leaderboard
    from pai_bench.publish import default_page, pack_records, run_folder
    from pai_bench.stats import PAIRED_TESTS

    options = {}
    for item in args.options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"malformed option {item!r}: expected key=value, e.g. out=leaderboard/mysuite.md")
        if key not in LEADERBOARD_OPTIONS:
            raise unknown_choice("leaderboard option", key, LEADERBOARD_OPTIONS)
        options[key] = value
    try:
        alpha = float(options.get("alpha", 0.05))
    except ValueError:
        raise UserError(f"alpha={options['alpha']!r} is not a number") from None
    test = options.get("test", "ttest")
    if test not in PAIRED_TESTS:
        raise unknown_choice("test", test, PAIRED_TESTS)
    out = Path(options["out"]) if "out" in options else default_page(args.dir)
    if out.suffix != ".md":
        raise UserError(f"out={out} must name a .md file (the plot is written beside it as .png)")
    with run_folder(args.dir) as folder:
        records = load_run_records(folder)
        md, png = write_leaderboard(records, out, alpha=alpha, paired_test=test, title=options.get("title"), notes=run_notes(folder))
        print(f"wrote {md} and {png} ({len(records)} trial records)")
        if "records" in options:
            packed = pack_records(folder, records, Path(options["records"]))
            print(f"wrote {options['records']} ({packed} trial records and the grid): `pai-bench leaderboard {options['records']}` writes {md.name} again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
