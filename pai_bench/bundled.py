"""Find the built-in `methods/` and `suites/` packages, installed or in a checkout.

An install maps them to `pai_bench.methods` and `pai_bench.suites` (pyproject's package-dir).
The GPU machine runs `python -m pai_bench` from a checkout with nothing installed, where they
sit beside the package; there they are loaded from their folders under the same names, so
every other module imports them one way.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CHECKOUT = Path(__file__).resolve().parent.parent


def import_bundled(name: str) -> ModuleType:
    """Import `pai_bench.<name>` for `name` in {"methods", "suites"}."""
    full_name = f"pai_bench.{name}"
    if full_name in sys.modules:
        return sys.modules[full_name]
    try:
        return importlib.import_module(full_name)
    except ModuleNotFoundError as error:
        if error.name != full_name:
            raise
    folder = CHECKOUT / name
    spec = importlib.util.spec_from_file_location(
        full_name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no {full_name} installed and no {folder} in a checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = module
    spec.loader.exec_module(module)
    return module


def bundled_folder(name: str) -> Path:
    """The folder holding the files of `pai_bench.<name>` (e.g. the suite YAMLs)."""
    return Path(next(iter(import_bundled(name).__path__)))
