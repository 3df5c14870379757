"""The example third-party plugin package, installed for real and run through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pai-bench-filter-norm"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """pip-install the example into a private folder; its entry point is then on the path."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pai_bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_installed_plugin_is_listed(installed):
    result = cli(installed, "list", "methods")
    assert result.returncode == 0, result.stderr
    assert "filter-norm" in result.stdout.split()
    # Its module docstring's first paragraph, and its option as the override that sets it.
    assert "Filter-norm pruning: keep the weights of the strongest output filters." in result.stdout
    assert "options: filter-norm.mix=0.0" in result.stdout


def test_installed_plugin_runs_with_its_option(installed, tmp_path):
    out = tmp_path / "run"
    result = cli(
        installed, "run", "suite=quickstart", "methods=[filter-norm]", "filter-norm.mix=0.25", "sparsities=[0.8]",
        "seeds=1", "train.epochs=1", "data.subset=200", f"out={out}", "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "1 done" in result.stdout
    shown = cli(installed, "results", str(out), "--format", "csv").stdout
    assert ",filter-norm,0.8,0,done," in shown
    bad = cli(installed, "run", "suite=quickstart", "methods=[filter-norm]", "filter-norm.mix=3")
    assert bad.returncode == 2 and "filter-norm.mix=3.0 must be in [0, 1]" in bad.stderr
