"""Method variants: one method listed again under a row name of its own, with other options.

A suite's `methods` lists rows. A row is a registered method (`px`), or a variant the suite
defines under `variants` as its base method and the options it sets (`px-uniform: {method: px,
variant: uniform}`). A row's options are, lowest first: the method's defaults, the base
method's section (`options.px`, `px.rounds=50`), the variant's own (`variants.px-uniform`,
`px-uniform.rounds=50`). So a base method's section reaches its variants unless they set the
option themselves: `px.rounds=10` shortens every PX row, `px-uniform.rounds=10` only that one.

The trial key is the content, base method plus resolved options, never the row's name: renaming
a variant reruns nothing, and the reports label each record with the name its key has in the
current grid (`label_rows`). Two rows that would run the same trials are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pai_bench.errors import UserError, unknown_choice
from pai_bench.plugins import list_methods, resolve_options

if TYPE_CHECKING:
    from pai_bench.schema import SuiteConfig
    from pai_bench.spec import TrialSpec

#: A row name is typed on command lines (`px-uniform.rounds=5`, `methods=[a,b]`): no dots,
#: brackets, commas, `=` or spaces.
ROW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*\Z")


@dataclass(frozen=True)
class Row:
    """A row of a suite: its name, the registered method it runs, and that method's options
    resolved in full (what the trial key hashes)."""

    name: str
    method: str
    options: dict[str, Any]

    @property
    def is_variant(self) -> bool:
        return self.name != self.method

    @property
    def content(self) -> tuple[str, str]:
        """What the row runs, whatever its name: two rows with one content are the same trials."""
        return self.method, repr(sorted(self.options.items()))


def variant_definition(name: str, variants: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The base method of variant `name` and the options its definition sets, checked: the
    name can be typed, the base is a registered method (not another variant), the options exist."""
    methods = list_methods()
    if not ROW_NAME.match(name):
        raise UserError(f"variant name {name!r}: use letters, digits, '-', '_' or '+' (it is typed as {name}.option=value)")
    if name in methods:
        raise UserError(f"variant {name!r} has the name of a registered method; give the variant a name of its own, e.g. {name}-2")
    if name in _config_fields():  # `NAME.option=value` would set that section, not the variant
        raise UserError(f"variant {name!r} has the name of a config section ({name}.option=value would set that); give the variant another name")
    definition = variants[name]
    if not isinstance(definition, Mapping):
        raise UserError(f"variants.{name} must be a mapping {{method: BASE, option: value, ...}}, got {definition!r}")
    options = dict(definition)
    base = options.pop("method", None)
    if base is None:
        hint = " (write {method: px, variant: uniform}, a space after each colon)" if any(":" in str(k) for k in options) else ""
        raise UserError(f"variant {name!r} names no base method: give variants.{name}.method=METHOD{hint}")
    if base not in methods:
        raise unknown_choice(f"base method of variant {name!r}", str(base), methods)
    try:
        resolve_options(base, options)
    except UserError as error:
        raise UserError(f"variant {name!r}: {error}") from None
    return base, options


def resolve_row(name: str, variants: Mapping[str, Any], sections: Mapping[str, Any]) -> Row:
    """Row `name` of a suite: a registered method with its section of `sections` (the suite's
    `options`), or a variant of `variants` with its base's section under its own options."""
    if name in variants:
        base, own = variant_definition(name, variants)
    elif name in list_methods():
        base, own = name, {}
    else:
        raise unknown_choice("method", name, list_methods() + sorted(variants))
    merged = {**(sections.get(base) or {}), **own}
    return Row(name, base, vars(resolve_options(base, merged)))


def suite_rows(config: SuiteConfig) -> dict[str, Row]:
    """The rows `config.methods` lists, in order, each resolved; every variant the suite
    defines is checked too, listed or not, so a typo in one surfaces at once."""
    for name in config.variants:
        variant_definition(name, config.variants)
    rows: dict[str, Row] = {}
    for name in config.methods:
        if name in rows:
            raise UserError(f"methods lists {name!r} twice; list each row once")
        rows[name] = resolve_row(name, config.variants, config.options)
    _check_distinct(rows.values())
    return rows


def _check_distinct(rows: Iterable[Row]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        content = row.content
        if content in seen:
            raise UserError(
                f"rows {seen[content]!r} and {row.name!r} are the same trials ({row.method} with {option_text(row.options) or 'no options'}); "
                "drop one, or give the variant other options"
            )
        seen[content] = row.name


def method_options(name: str, variants: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """For the Python API: the base method and option overrides of `name`, a registered method
    or a variant of `variants` (e.g. a loaded suite's `config.variants`); `overrides` win."""
    variants = variants or {}
    if name in variants:
        base, own = variant_definition(name, variants)
        return base, {**own, **overrides}
    if variants and name not in list_methods():
        raise unknown_choice("method", name, list_methods() + sorted(variants))
    return name, dict(overrides)


def label_rows(records: Sequence[dict[str, Any]], specs: Iterable[TrialSpec]) -> list[dict[str, Any]]:
    """The records with `row` set to the name the current grid gives their key (a renamed
    variant's records carry its old name); records of no spec keep theirs."""
    names = {spec.key: spec.row_name for spec in specs}
    return [{**record, "row": names[record["key"]]} if record.get("key") in names else record for record in records]


def option_text(options: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={shown_value(value)}" for key, value in options.items())


def shown_value(value: object) -> str:
    """A value as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _config_fields() -> set[str]:
    from dataclasses import fields

    from pai_bench.schema import SuiteConfig

    return {field.name for field in fields(SuiteConfig)}

