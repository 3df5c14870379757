"""The executor's settings: defaults, and bad values rejected in one line with exit code 2."""

from __future__ import annotations

import pytest

from pai_bench.cli import main
from pai_bench.config import load_config


def test_tune_is_the_default_executor_and_quickstart_runs_locally():
    config = load_config(None)
    assert (config.executor, config.resources.cpu, config.resources.gpu) == ("tune", 1.0, 1.0)
    assert (config.ray.address, config.ray.max_failures, config.checkpoint_every) == (None, 2, 10)
    assert load_config("quickstart").executor == "local"
    packed = load_config("quickstart", ["executor=tune", "resources.gpu=0.25", "resources.cpu=2", "ray.address=auto"])
    assert (packed.executor, packed.resources.gpu, packed.resources.cpu, packed.ray.address) == ("tune", 0.25, 2.0, "auto")


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("executor=slurm", "unknown executor 'slurm'; valid choices: local, tune"),
        ("resources.gpu=1.5", "resources.gpu=1.5: above 1, Ray takes whole GPUs only"),
        ("resources.gpu=-1", "resources.gpu=-1.0: must be 0"),
        ("resources.cpu=0", "resources.cpu=0.0: a trial needs a positive number of CPU cores"),
        ("resources.gpu=lots", "bad config value for resources.gpu"),
        ("resources=2", "bad config value"),
        ("resources.tpu=1", "unknown key 'resources.tpu'; valid keys of resources: cpu, gpu"),
        ("ray.adress=auto", "unknown key 'ray.adress'; valid keys of ray: address, storage"),
        ("ray.max_failures=-1", "ray.max_failures=-1: must be 0 or more"),
        ("ray.max_concurrent=-1", "ray.max_concurrent=-1"),
        ("checkpoint_every=-2", "checkpoint_every=-2"),
    ],
)
def test_bad_execution_settings_are_one_line_and_exit_2(override, fragment, capsys):
    assert main(["run", "suite=quickstart", override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
