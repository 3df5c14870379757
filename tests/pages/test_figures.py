"""The figure tables beside the accuracy: what each figure reads from a record."""

from __future__ import annotations

from pai_bench.pages.figures import empty_layers


def test_layer_collapse_counts_empty_layers_and_layers_with_no_output_unit():
    layer = {"name": "conv", "kept": 5, "total": 9, "outputs": 4, "alive_outputs": 4}
    record = {"masks": {"layers": [layer, {**layer, "kept": 0, "alive_outputs": 0}, {**layer, "alive_outputs": 0}]}}
    assert empty_layers(record) == 2.0  # an empty layer, and one whose output width fell to 0
    assert empty_layers({"masks": {"collapsed_layers": 3}}) == 3.0 and empty_layers({}) is None
