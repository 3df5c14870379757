from __future__ import annotations

import sys
import textwrap

import pytest
import torch

import pai_bench
from pai_bench import plugins
from pai_bench.errors import UserError


def test_builtin_methods_are_registered():
    assert {"dense", "random", "magnitude"} <= set(pai_bench.list_methods())


def test_options_resolve_with_defaults_and_reject_unknown():
    assert plugins.resolve_options("random").scope == "global"
    assert plugins.resolve_options("random", {"scope": "layer"}).scope == "layer"
    with pytest.raises(UserError, match="valid options of random: scope"):
        plugins.resolve_options("random", {"rate": 1})


def test_third_party_entry_point_registers_a_method(tmp_path, monkeypatch, batches, tiny_net):
    """A distribution on sys.path declaring the `pai_bench.methods` entry point is picked up."""
    (tmp_path / "my_pruner.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            import torch
            from pai_bench import ScoreMethod

            @dataclass
            class Options:
                power: float = 1.0

            class FirstWeights(ScoreMethod):
                Options = Options

                def score(self, model, masks, batches, generator):
                    return {n: -torch.arange(m.numel(), dtype=torch.float).view_as(m) for n, m in masks.items()}
            """
        )
    )
    dist = tmp_path / "my_pruner-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pruner\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pai_bench.methods]\nfirst-weights = my_pruner:FirstWeights\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins.METHODS, "_entries", dict(plugins.METHODS._entries))
    assert "first-weights" in pai_bench.list_methods()
    result = pai_bench.prune(tiny_net, "first-weights", 0.5, batches, power=2.0)
    assert result.method == "first-weights" and result.options == {"power": 2.0}
    first = result.masks["conv1.weight"].flatten()
    assert 0 < int(first.sum()) < first.numel()
    assert torch.equal(first, torch.arange(first.numel()) < int(first.sum()))  # the plugin's score ranks the first weights highest
    sys.modules.pop("my_pruner", None)
