"""The machine a trial records, and the line a page prints from the records."""

from __future__ import annotations

import os

import torch

from pai_bench.machine import describe_machine, machines_line


def test_a_trial_records_the_cpu_its_cores_and_its_torch_threads():
    machine = describe_machine()
    assert machine["cpus"] == os.cpu_count() and machine["torch_threads"] == torch.get_num_threads()
    assert isinstance(machine["cpu"], str) and machine["cpu"]
    assert machine["gpu"] is None or isinstance(machine["gpu"], str)


def test_the_page_names_each_machine_of_the_done_trials_with_its_count():
    one = {"cpu": "AMD EPYC", "cpus": 2, "torch_threads": 1, "gpu": None}
    other = {"cpu": "Xeon", "cpus": 16, "torch_threads": 4, "gpu": "NVIDIA H200"}
    records = [{"status": "done", "machine": one}] * 2 + [{"status": "done", "machine": other}, {"status": "failed", "machine": other}]
    assert machines_line(records) == (
        "Trials ran on AMD EPYC, 2 logical CPUs, 1 torch thread a trial (2 trials); "
        "Xeon, 16 logical CPUs, 4 torch threads a trial, NVIDIA H200 (1 trials). "
    )
    assert machines_line(records[:2]) == "Trials ran on AMD EPYC, 2 logical CPUs, 1 torch thread a trial. "
    assert machines_line([{"status": "done"}]) == ""
