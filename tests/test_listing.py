"""`pai-bench list methods` and `list suites`: what a user reads to choose one."""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass

import pytest

from pai_bench import plugins
from pai_bench.config import list_suites, load_config
from pai_bench.listing import WIDTH, method_description, methods_listing, suites_listing
from pai_bench.method import ScoreMethod
from pai_bench.plugins import list_methods, register_method, resolve_options


def blocks(listing: str) -> dict[str, list[str]]:
    """{name: its lines after the name}, from a listing's name column."""
    found: dict[str, list[str]] = {}
    for line in listing.splitlines():
        if not line.startswith(" "):
            name, _, rest = line.partition(" ")
            found[name] = [rest.strip()] if rest.strip() else []
        else:
            found[name].append(line.strip())
    return found


def test_every_method_is_listed_with_its_paper_and_defaults():
    listed = blocks(methods_listing())
    assert list(listed) == list_methods()
    assert "CVPR 2024" in " ".join(listed["px"]) and "ICLR 2019" in " ".join(listed["snip"])
    assert listed["px"][-1] == "options: px.rounds=100 px.variant=authors px.dtype=auto"
    assert listed["magnitude"][-1] == "options: none"


def test_the_listed_defaults_are_overrides_that_change_nothing():
    for name, lines in blocks(methods_listing()).items():
        settings = lines[-1].removeprefix("options: ")
        overrides = [] if settings == "none" else settings.split()
        config = load_config("quickstart", [f"methods=[{name}]", *overrides])
        assert vars(resolve_options(name, config.options.get(name, {}))) == vars(resolve_options(name)), name


def test_methods_sharing_a_module_are_told_apart_by_their_class():
    assert method_description("scratch-e") != method_description("scratch-b")
    assert method_description("scratch-e").startswith("Scratch-E")


def test_a_plugin_without_docstrings_still_lists(monkeypatch):
    monkeypatch.setattr(plugins.METHODS, "_entries", dict(plugins.METHODS._entries))

    @dataclass
    class Options:
        power: float = 2.0

    module = types.ModuleType("bare_plugin")  # no docstring, and neither has its class
    monkeypatch.setitem(sys.modules, module.__name__, module)
    register_method("bare")(type("Bare", (ScoreMethod,), {"Options": Options, "__doc__": None, "__module__": module.__name__}))
    assert method_description("bare") == "(no description)"
    assert blocks(methods_listing())["bare"] == ["(no description)", "options: bare.power=2.0"]


def test_suites_are_listed_with_their_description():
    listed = blocks(suites_listing())
    assert list(listed) == list_suites()
    assert "CPU smoke suite" in " ".join(listed["quickstart"])
    assert re.search(r"95\.6 to 99\.95 %", " ".join(listed["cifar10-extreme"]))


@pytest.mark.parametrize("listing", [methods_listing, suites_listing])
def test_lines_wrap_to_the_width(listing):
    assert max(len(line) for line in listing().splitlines()) <= WIDTH


def test_readme_method_table_lists_every_built_in_method_and_option():
    """The table users read first must not fall behind `pai-bench list methods`."""
    import re
    from dataclasses import fields
    from pathlib import Path

    from pai_bench.plugins import list_methods, method_class

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = re.split(r"(?<!\\)\|", line)  # a cell's own pipes are escaped: \|
        if len(cells) == 5 and re.fullmatch(r" `[\w-]+` ", cells[1]):
            rows[cells[1].strip(" `")] = cells[3]
    for name in list_methods():
        cls = method_class(name)
        if not cls.__module__.startswith("pai_bench.methods"):
            continue  # a third-party plugin installed here
        assert name in rows, f"README's method table has no row for {name}"
        for option in fields(cls.Options):
            assert f"`{option.name}`" in rows[name], f"README's row for {name} misses its option {option.name}"

