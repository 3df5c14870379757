"""The version recorded in every trial key, so a new release never reuses stale results."""

__version__ = "0.1.0"
