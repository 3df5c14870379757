from __future__ import annotations

from dataclasses import dataclass

import torch

from pai_bench import rounding
from pai_bench.method import ScoreMethod
from pai_bench.rounding import permuted, rounding_agreement


def test_permuted_keeps_the_examples_and_batch_sizes_in_another_order():
    batches = [(torch.arange(6.0).view(6, 1), torch.arange(6)), (torch.arange(6.0, 10.0).view(4, 1), torch.arange(6, 10))]
    moved = permuted(batches, seed=0)
    assert [len(x) for x, _ in moved] == [6, 4]
    inputs = torch.cat([x for x, _ in moved]).flatten()
    targets = torch.cat([y for _, y in moved])
    assert sorted(inputs.tolist()) == list(range(10)) and inputs.tolist() != list(range(10))
    assert torch.equal(inputs.long(), targets)  # each example keeps its label
    assert [x.tolist() for x, _ in permuted(batches, seed=0)] == [x.tolist() for x, _ in moved]


def test_a_criterion_free_of_rounding_agrees_with_itself(tiny_net, batches):
    from pai_bench.pruning import prune

    masks = prune(tiny_net, "magnitude", 0.9, batches, seed=0).masks
    found = rounding_agreement(tiny_net, "magnitude", {}, 0.9, batches, masks, seed=0)
    assert found["rounding_jaccard_dtype"] == 1.0 and found["rounding_jaccard_order"] == 1.0
    assert found["rounding_precision"] == "float64"


class _FirstExampleSign(ScoreMethod):
    """Ranks weights by magnitude times the sign of the first pruning example: a criterion that
    the order of the pruning examples turns upside down."""

    name = "first-example-sign"

    @dataclass
    class Options:
        pass

    def score(self, model, masks, batches, generator):
        sign = torch.sign(batches[0][0].flatten()[0])
        params = dict(model.named_parameters())
        return {name: params[name].detach().abs() * sign for name in masks}


def test_a_mask_that_moves_with_the_example_order_is_measured(tiny_net, monkeypatch):
    from pai_bench.pruning import prune

    inputs = torch.ones(20, 3, 8, 8)
    inputs[1:] = -1.0  # only the first example is positive: almost any other order flips the ranking
    batches = [(inputs, torch.arange(20) % 10)]
    masks = prune(tiny_net, _FirstExampleSign(), 0.9, batches, seed=0).masks
    monkeypatch.setattr(rounding, "create_method", lambda name, options: _FirstExampleSign())
    found = rounding_agreement(tiny_net, "first-example-sign", {}, 0.9, batches, masks, seed=0)
    assert found["rounding_jaccard_dtype"] == 1.0
    assert found["rounding_jaccard_order"] < 0.2


def test_a_method_that_scores_in_its_own_precision_is_rescored_in_the_other(tiny_net, batches, monkeypatch):
    """Converting the model would not reach synflow's or px's scores (they cast to their
    `dtype` option): the recomputation must change that option."""
    from pai_bench.plugins import create_method
    from pai_bench.pruning import prune

    created = []

    def recording(name, options):
        created.append(dict(options))
        return create_method(name, options)

    masks = prune(tiny_net, "synflow", 0.9, batches, seed=0, rounds=3).masks
    monkeypatch.setattr(rounding, "create_method", recording)
    found = rounding_agreement(tiny_net, "synflow", {"rounds": 3, "dtype": "float64"}, 0.9, batches, masks, seed=0)
    assert found["rounding_precision"] == "float32"
    assert [options["dtype"] for options in created] == ["float32", "float64"]  # other precision, then reordered
    assert 0.0 <= found["rounding_jaccard_dtype"] <= 1.0
