from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pai_bench.maskbits import decode_masks, encode_masks, jaccard


def test_masks_survive_json_exactly_with_their_names_shapes_and_order():
    generator = torch.Generator().manual_seed(0)
    masks = {"b.weight": torch.rand(5, 3, 3, 3, generator=generator) < 0.1, "a.weight": torch.rand(7, 9, generator=generator) < 0.5}
    decoded = decode_masks(json.loads(json.dumps(encode_masks(masks))))
    assert list(decoded) == ["b.weight", "a.weight"]
    for name, mask in masks.items():
        assert decoded[name].dtype == bool and np.array_equal(decoded[name], mask.numpy())


def test_a_sparse_mask_is_stored_in_far_fewer_bytes_than_its_weights():
    mask = torch.zeros(300_000, dtype=torch.bool)
    mask[::997] = True
    assert len(encode_masks({"w": mask})["data"]) < 300_000 / 8 / 4


def test_an_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match="unknown mask encoding 'zip'"):
        decode_masks({"encoding": "zip", "layers": [], "data": ""})


def test_jaccard_is_shared_over_either_kept_across_layers():
    a = {"x": torch.tensor([1, 1, 0, 0], dtype=torch.bool), "y": torch.tensor([[1, 0]], dtype=torch.bool)}
    b = {"x": torch.tensor([1, 0, 1, 0], dtype=torch.bool), "y": torch.tensor([[1, 0]], dtype=torch.bool)}
    assert jaccard(a, b) == pytest.approx(2 / 4)
    assert jaccard(a, a) == 1.0
    empty = {"x": torch.zeros(4, dtype=torch.bool), "y": torch.zeros(1, 2, dtype=torch.bool)}
    assert jaccard(empty, empty) == 1.0 and jaccard(a, empty) == 0.0
    with pytest.raises(ValueError, match="not of the same layers"):
        jaccard(a, {"x": a["x"]})
