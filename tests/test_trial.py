from __future__ import annotations

import dataclasses

import torch

from pai_bench.config import DataConfig, load_config
from pai_bench.data import Dataset, ImageSet
from pai_bench.runner.grid import expand_grid
from pai_bench.trial import TrialSpec, input_shape


def quick_specs(*overrides: str) -> list[TrialSpec]:
    return expand_grid(load_config("quickstart", list(overrides)))


def test_grid_is_methods_by_sparsities_by_seeds_with_dense_once_per_seed():
    specs = quick_specs("methods=[dense,random,magnitude]", "sparsities=[0.5,0.9,0.99]", "seeds=3")
    assert len(specs) == 3 * (1 + 2 * 3)
    assert {(s.method, s.sparsity) for s in specs if s.method == "dense"} == {("dense", 0.0)}
    assert len({s.key for s in specs}) == len(specs)
    assert specs[0].options == {} and next(s for s in specs if s.method == "random").options == {"scope": "global"}


def test_key_depends_on_what_determines_the_result_only():
    base = quick_specs("methods=[random]", "sparsities=[0.9]", "seeds=1")[0]
    assert base.key == quick_specs("methods=[random]", "sparsities=[0.9]", "seeds=1")[0].key
    same = [
        dataclasses.replace(base, train=dataclasses.replace(base.train, device="cuda:3")),
        dataclasses.replace(base, data=dataclasses.replace(base.data, root="/elsewhere")),
        dataclasses.replace(base, suite="renamed"),
    ]
    assert all(spec.key == base.key for spec in same)
    changed = [
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, sparsity=0.99),
        dataclasses.replace(base, options={"scope": "erk"}),
        dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=7)),
        dataclasses.replace(base, data=dataclasses.replace(base.data, prune_per_class=5)),
        dataclasses.replace(base, model=dataclasses.replace(base.model, name="resnet20")),
    ]
    assert len({spec.key for spec in changed} | {base.key}) == len(changed) + 1


def test_spec_round_trips_through_its_record_dict():
    spec = quick_specs("methods=[random]", "random.scope=layer", "seeds=1")[0]
    assert TrialSpec.from_dict(spec.as_dict()) == spec


def test_input_shape_is_the_stored_images_or_the_resize():
    images = ImageSet(torch.zeros(2, 3, 64, 48, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    dataset = Dataset("made", images, images, ["a"], (0.5,) * 3, (0.5,) * 3)
    assert input_shape(dataset, DataConfig()) == (3, 64, 48)
    assert input_shape(dataset, DataConfig(input_size=224)) == (3, 224, 224)
