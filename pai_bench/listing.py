"""What `pai-bench list` prints: each method with its paper and options, each suite with what
it runs, a suite's rows (methods and variants) with their options, so that choosing one needs
no trip to the source.

A method's description is the first paragraph of its module's docstring when the module holds
that method alone (a built-in's opens with the paper), else of its class's docstring.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import fields


from pai_bench.config import SuiteConfig, list_suites, read_suite_file, suite_path
from pai_bench.plugins import list_methods, method_class, resolve_options
from pai_bench.variants import option_text, shown_value, suite_rows, variant_definition

#: Width the descriptions wrap to, and the indent of every line after a name.
WIDTH = 100
INDENT = 14


def methods_listing() -> str:
    blocks = []
    for name in list_methods():
        options = resolve_options(name)
        settings = " ".join(f"{name}.{field.name}={shown_value(getattr(options, field.name))}" for field in fields(options))
        blocks.append(_block(name, [method_description(name), f"options: {settings}" if settings else "options: none"]))
    return "\n".join(blocks)


def rows_listing(config: SuiteConfig) -> str:
    """The rows `config` runs, in order: each with the method it runs, what a variant sets, and
    the options as resolved for that row; then the variants defined but not listed."""
    blocks = []
    rows = suite_rows(config)
    for row in rows.values():
        what = row.method
        if row.is_variant:
            what += f" with {option_text(variant_definition(row.name, config.variants)[1]) or 'its defaults'}"
        blocks.append(_block(row.name, [what, f"options: {option_text(row.options) or 'none'}"]))
    unlisted = [name for name in config.variants if name not in rows]
    if unlisted:
        blocks.append(f"(variants defined but not in methods: {', '.join(unlisted)})")
    return "\n".join(blocks)


def suites_listing() -> str:
    return "\n".join(_block(name, [_suite_description(name)]) for name in list_suites())


def method_description(name: str) -> str:
    cls = method_class(name)
    module_doc = getattr(sys.modules.get(cls.__module__), "__doc__", None)
    alone = sum(method_class(other).__module__ == cls.__module__ for other in list_methods()) == 1
    text = (module_doc if alone else None) or cls.__doc__ or ""
    return " ".join(text.strip().split("\n\n")[0].split()) or "(no description)"


def _suite_description(name: str) -> str:
    return read_suite_file(suite_path(name)).get("description") or "(no description)"


def _block(name: str, paragraphs: list[str]) -> str:
    """`name` then its paragraphs, wrapped, each under the first one's column."""
    lines = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(paragraph, WIDTH - INDENT, break_on_hyphens=False) or [""]
    first, *rest = lines
    return "\n".join([f"{name:<{INDENT - 1}} {first}" if len(name) < INDENT else f"{name}\n{' ' * INDENT}{first}", *(" " * INDENT + line for line in rest)])


