"""The method registry: built-in plugins from `methods/`, third-party ones by entry point.

`pip install my-pruner` whose package declares an entry point in the group `pai_bench.methods`
makes `method=my-pruner` work with no change here. An entry point may name a module (importing
it registers its methods with `@register_method`) or a Method class.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pai_bench.bundled import import_bundled
from pai_bench.errors import UserError
from pai_bench.method import Method
from pai_bench.registry import Registry

ENTRY_POINT_GROUP = "pai_bench.methods"

METHODS: Registry[type[Method]] = Registry("method")
_loaded = False

M = TypeVar("M", bound=type[Method])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: `@register_method("snip")` makes `method=snip` available."""

    def add(cls: M) -> M:
        cls.name = name
        METHODS.add(name, cls)
        return cls

    return add


def load_plugins() -> None:
    """Import the built-in methods and every installed `pai_bench.methods` entry point, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_bundled("methods")
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
        except Exception as error:  # a broken third-party plugin must not take pai-bench down
            print(f"warning: plugin {entry_point.name!r} failed to load: {error}", file=sys.stderr)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Method) and loaded.name not in METHODS:
            register_method(entry_point.name)(loaded)


def method_class(name: str) -> type[Method]:
    load_plugins()
    return METHODS.get(name)


def list_methods() -> list[str]:
    """Names of every registered method, built-in and third-party."""
    load_plugins()
    return METHODS.names()


def resolve_options(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The method's options dataclass with `overrides` applied, type-checked.

    An unknown option or a value of the wrong type is a UserError naming it and the valid ones.
    """
    cls = method_class(name)
    schema = OmegaConf.structured(cls.Options)
    valid = ", ".join(schema.keys()) or "(none)"
    for key in overrides or {}:
        if key not in schema:
            raise UserError(f"unknown option {name}.{key}; valid options of {name}: {valid}")
    try:
        merged = OmegaConf.merge(schema, OmegaConf.create(dict(overrides or {})))
        return OmegaConf.to_object(merged)
    except (OmegaConfBaseException, ValueError, TypeError) as error:
        # ValueError/TypeError: a plugin's own option checks in its dataclass's __post_init__
        raise UserError(f"bad option for {name}: {_first_line(error)}") from None


def create_method(name: str, overrides: Mapping[str, Any] | None = None) -> Method:
    return method_class(name)(resolve_options(name, overrides))


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
