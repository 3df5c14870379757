"""The one exception type users see.

The CLI prints a `UserError` as a single line and exits with code 2; anything else is a bug
in pai-bench and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: an unknown name, a value out of range, a missing file."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> UserError:
    """The error for a name that is not one of `choices`, listing the valid ones."""
    valid = ", ".join(sorted(choices)) or "(none registered)"
    return UserError(f"unknown {kind} {value!r}; valid choices: {valid}")
