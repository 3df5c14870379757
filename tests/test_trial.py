from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pai_bench.ablations import reinit_seed
from pai_bench.config import DataConfig, DiagnosticsConfig, PruneConfig, load_config
from pai_bench.data import Dataset, ImageSet
from pai_bench.models import build_model
from pai_bench.grid import expand_grid
from pai_bench.trial import TrialSpec, input_shape, load_trial_data, pruning_loader, run_trial
from pai_bench.version import __version__


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


# --- keys of the fields added after trials were first keyed --------------------------------

#: The quickstart's keys before ablations, diagnostics and prune.batch_size existed (pai-bench
#: 0.1.0). A release changes every key (the version is hashed); update them then, never else.
QUICKSTART_KEYS = [
    "f6aa07011c63c84f", "d06de2d8e3822811", "48b861b0a7e11a00", "b8620bde8c2812c8", "fdc27e02d0807de3",
    "18cb8c98c0669f7b", "66f2590d055860b2", "e65a15e8d298d951", "cfffe3f853590ea8", "fd254c2bb5861474",
    "b84c6d5ece74def1", "840e6046690f65ec", "754557e90d74e27e", "58617c9b776b5891",
]  # fmt: skip


def test_new_fields_leave_existing_keys_alone_until_set():
    specs = quick_specs()
    if __version__ == "0.1.0":
        assert [spec.key for spec in specs] == QUICKSTART_KEYS
    base = specs[1]
    assert base.ablation is None and base.prune.batch_size is None
    measured = dataclasses.replace(base, diagnostics=DiagnosticsConfig(ntk=True, ntk_examples=3))
    assert measured.key == base.key  # a measurement beside the result, not part of it
    changed = [
        dataclasses.replace(base, ablation="shuffle"),
        dataclasses.replace(base, ablation="invert"),
        dataclasses.replace(base, prune=dataclasses.replace(base.prune, batch_size=64)),
        dataclasses.replace(base, prune=dataclasses.replace(base.prune, batch_size=10)),
    ]
    assert len({spec.key for spec in changed} | {base.key}) == len(changed) + 1


def test_spec_with_ablation_and_diagnostics_round_trips_and_old_dicts_load():
    spec = quick_specs("methods=[magnitude]", "ablations=[reinit]", "diagnostics.ntk=true", "prune.batch_size=32", "seeds=1")[-1]
    assert spec.ablation == "reinit"
    assert TrialSpec.from_dict(spec.as_dict()) == spec
    old = spec.as_dict()
    for name in ("ablation", "diagnostics"):
        old.pop(name)
    old["prune"].pop("batch_size")
    assert TrialSpec.from_dict(old).key == dataclasses.replace(spec, ablation=None, prune=PruneConfig()).key


# --- ablated trials through run_trial -------------------------------------------------------

#: One-epoch quickstart trials of magnitude at 50 %. lr 0: the weights after the epoch are
#: exactly those the trial started from, so the checkpoint shows the weights at init.
ABLATED = ["data.subset=100", "train.epochs=1", "train.lr=0", "seeds=1", "sparsities=[0.5]", "methods=[magnitude]"]


class Capture:
    """A checkpoint hook that keeps the last state a trial saves (masks, weights)."""

    every = 1

    def __init__(self) -> None:
        self.state: dict | None = None

    def load(self) -> None:
        return None

    def save(self, state: dict) -> None:
        self.state = state


@pytest.fixture(scope="module")
def ablated_trials():
    """{ablation: (record, masks, weights after an lr-0 epoch)} for None, shuffle, reinit, invert."""
    specs = quick_specs(*ABLATED, "ablations=[shuffle,reinit,invert]")
    dataset = load_trial_data(specs[0])
    trials = {}
    for spec in specs:
        hook = Capture()
        record = run_trial(spec, dataset=dataset, checkpoint=hook)
        assert record["status"] == "done", record.get("error")
        trials[spec.ablation] = (record, hook.state["masks"], hook.state["train"]["model"])
    return trials


def initial_weights(seed: int) -> dict[str, torch.Tensor]:
    return build_model("quicknet", num_classes=10, seed=seed).state_dict()


def test_shuffle_trial_moves_the_mask_at_equal_layer_counts_on_the_original_weights(ablated_trials):
    plain_record, plain, _ = ablated_trials[None]
    record, shuffled, weights = ablated_trials["shuffle"]
    assert record["ablation"] == "shuffle" and plain_record["ablation"] is None
    assert record["key"] != plain_record["key"]
    for name, mask in plain.items():
        assert int(shuffled[name].sum()) == int(mask.sum()), name
    assert [layer["kept"] for layer in record["masks"]["layers"]] == [layer["kept"] for layer in plain_record["masks"]["layers"]]
    moved = sum(int((shuffled[name] != plain[name]).sum()) for name in plain)
    assert moved > 0.3 * sum(mask.numel() for mask in plain.values())
    # The unpruned network's weights under the new mask: where only the shuffled mask keeps a
    # weight it is the original weight, not a zero left by the plain mask.
    original = initial_weights(seed=0)
    for name, mask in shuffled.items():
        torch.testing.assert_close(weights[name], original[name] * mask, rtol=0, atol=0)
        assert bool((weights[name][mask & ~plain[name]] != 0).all()), name


def test_reinit_trial_keeps_the_mask_on_fresh_weights(ablated_trials):
    _, plain, plain_weights = ablated_trials[None]
    record, masks, weights = ablated_trials["reinit"]
    assert record["ablation"] == "reinit" and record["ablation_seed"] == reinit_seed(0)
    fresh = initial_weights(seed=reinit_seed(0))
    for name, mask in plain.items():
        assert torch.equal(masks[name], mask), name
        torch.testing.assert_close(weights[name], fresh[name] * mask, rtol=0, atol=0)
        assert not torch.equal(weights[name], plain_weights[name]), name


def test_invert_trial_keeps_the_complement_of_the_magnitude_ranking(ablated_trials):
    plain_record, plain, _ = ablated_trials[None]
    record, inverted, _ = ablated_trials["invert"]
    original = initial_weights(seed=0)
    for name, mask in plain.items():
        assert torch.equal(inverted[name], ~mask), name  # 50 % of an even count: exactly the rest
    kept = torch.cat([original[n].abs().flatten()[inverted[n].flatten()] for n in inverted])
    dropped = torch.cat([original[n].abs().flatten()[~inverted[n].flatten()] for n in inverted])
    assert kept.max() <= dropped.min()
    # The record's layer figures are the inverted mask's, not the plain one's.
    assert [layer["kept"] for layer in record["masks"]["layers"]] == [int(inverted[n].sum()) for n in inverted]
    assert record["masks"]["layers"] != plain_record["masks"]["layers"]


def test_ntk_diagnostics_are_recorded_at_init_and_change_nothing_else(ablated_trials):
    plain_record, _, plain_weights = ablated_trials[None]
    spec = quick_specs(*ABLATED, "diagnostics.ntk=true", "diagnostics.ntk_examples=3")[0]
    hook = Capture()
    record = run_trial(spec, dataset=load_trial_data(spec), checkpoint=hook)
    assert record["status"] == "done", record.get("error")
    diagnostics = record["diagnostics"]
    assert 0 < diagnostics["ntk_trace_ratio"] < 1 and 0 < diagnostics["ntk_top_eigenvalue_ratio"] <= 1
    ntk = diagnostics["ntk"]
    assert ntk["pruned"]["examples"] == ntk["dense"]["examples"] == 3
    assert diagnostics["ntk_trace_ratio"] == pytest.approx(ntk["pruned"]["trace"] / ntk["dense"]["trace"])
    assert record["timings"]["ntk_s"] > 0 and "diagnostics" not in plain_record
    # Same key, same training: the measurement leaves the trial's result alone.
    assert record["key"] == plain_record["key"]
    assert [e["train_loss"] for e in record["epochs"]] == [e["train_loss"] for e in plain_record["epochs"]]
    assert all(torch.equal(hook.state["train"]["model"][n], plain_weights[n]) for n in plain_weights)


def test_pruning_batches_follow_prune_batch_size_not_eval_batch_size():
    spec = quick_specs("methods=[magnitude]", "seeds=1", "train.eval_batch_size=7")[0]
    dataset = load_trial_data(spec)
    split = dataset.train.subset(torch.arange(100))
    assert [len(y) for _, y in pruning_loader(split, dataset, spec, torch.device("cpu"))] == [100]
    spec = dataclasses.replace(spec, prune=PruneConfig(batch_size=64))
    assert [len(y) for _, y in pruning_loader(split, dataset, spec, torch.device("cpu"))] == [64, 36]


def test_an_ablation_of_a_method_without_scored_masks_fails_the_trial():
    spec = dataclasses.replace(quick_specs("methods=[dense]", "seeds=1", "data.subset=100")[0], ablation="shuffle")
    record = run_trial(spec)
    assert record["status"] == "failed" and "ablation 'shuffle' does not apply to 'dense'" in record["error"]


def test_warnings_raised_while_pruning_stay_in_the_record():
    """PX's authors' variant on QuickNet scores rounding noise and says so; the record keeps it."""
    overrides = ("methods=[px,magnitude]", "px.rounds=2", "sparsities=[0.9]", "seeds=1", "train.epochs=1", "data.subset=100")
    specs = {spec.method: spec for spec in quick_specs(*overrides)}
    dataset = load_trial_data(specs["px"])
    with pytest.warns(RuntimeWarning, match="rounding noise"):
        noisy = run_trial(specs["px"], dataset=dataset)
    assert noisy["status"] == "done", noisy.get("error")
    assert len(noisy["warnings"]) == 1 and "px (variant=authors): its scores are rounding noise" in noisy["warnings"][0]
    assert noisy["extras"]["score_precision_gap"] > 0.1
    clean = run_trial(specs["magnitude"], dataset=dataset)
    assert "warnings" not in clean and "tie_break" not in clean["masks"]


def test_label_names_the_ablation_and_cell_the_key_leaves_out():
    spec = quick_specs("methods=[snip]", "sparsities=[0.9]", "seeds=1")[0]
    assert spec.label == "snip, s=0.9, seed=0"
    assert dataclasses.replace(spec, ablation="shuffle", cell="cifar100").label == "snip (shuffle), s=0.9, seed=0, cifar100"


def test_out_of_gpu_memory_fails_the_trial_with_what_to_do(monkeypatch):
    import pai_bench.trial as trial_module

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(trial_module, "prune", out_of_memory)
    spec = quick_specs("methods=[magnitude]", "sparsities=[0.9]", "seeds=1", "data.subset=100")[0]
    record = run_trial(spec)
    assert record["status"] == "failed"
    assert record["error"].startswith("CUDA out of memory. Tried to allocate 2.00 GiB (trials packed")
    assert "resources.gpu=0.5" in record["error"] and "more detail" not in record["error"]


def test_a_fast_engine_that_cannot_compile_still_trains_the_trial(monkeypatch):
    """Where the engine's compiler does not work (here a backend that raises, as inductor does
    without a working C++ compiler or Triton), the trial trains on the engine eagerly and its
    record says why, instead of failing."""
    import pai_bench.training as training_module
    from pai_bench.engine import EngineSettings, FastTrainer

    def no_compiler(graph, example_inputs):
        raise RuntimeError("Triton is too old for this GPU\nand more lines")

    def fast_trainer(model, masks, train_config):
        settings = EngineSettings(compile=True, compile_backend=no_compiler)
        return FastTrainer(model, masks, train_config, torch.device("cpu"), settings)

    monkeypatch.setattr(training_module, "make_trainer", fast_trainer)
    spec = quick_specs("methods=[magnitude]", "sparsities=[0.9]", "seeds=1", "train.epochs=2", "data.subset=100")[0]
    with pytest.warns(RuntimeWarning, match="trains on it eagerly"):
        record = run_trial(spec)
    assert record["status"] == "done", record.get("error")
    assert record["engine"] == "fast-eager"
    assert record["engine_fallback"] == "BackendCompilerFailed: RuntimeError: Triton is too old for this GPU"
    assert [epoch["epoch"] for epoch in record["epochs"]] == [1, 2]
    assert all(math.isfinite(epoch["train_loss"]) for epoch in record["epochs"])


def test_a_trained_trial_records_its_effective_sparsity(ablated_trials):
    record, masks, _ = ablated_trials[None]
    layers = record["masks"]["layers"]
    assert all(0 <= layer["effective"] <= layer["kept"] for layer in layers)
    assert record["masks"]["effective_kept"] == sum(layer["effective"] for layer in layers)
    assert record["sparsity_effective"] == pytest.approx(1 - record["masks"]["effective_kept"] / record["masks"]["total"])
    assert record["sparsity_effective"] >= record["sparsity"] and "mask" not in record  # a trained trial keeps no mask


def test_a_prune_only_trial_measures_the_masks_at_init_and_trains_nothing():
    from pai_bench.maskbits import decode_masks

    spec = quick_specs("methods=[random]", "sparsities=[0.97]", "seeds=1", "train.epochs=0", "diagnostics.rounding=true")[0]
    record = run_trial(spec)
    assert record["status"] == "done", record.get("error")
    assert "test_acc" not in record and "epochs" not in record
    assert "train_s" not in record["timings"] and record["train_budget"]["epochs"] == 0
    layers = record["masks"]["layers"]
    # random pruning this sparse on quicknet leaves kept weights on no path
    assert record["masks"]["effective_kept"] < record["masks"]["kept"] and record["sparsity_effective"] > 0.97
    decoded = decode_masks(record["mask"])
    assert list(decoded) == [layer["name"] for layer in layers]
    assert [int(mask.sum()) for mask in decoded.values()] == [layer["kept"] for layer in layers]
    diagnostics = record["diagnostics"]
    assert 0 <= diagnostics["rounding_jaccard_dtype"] <= 1 and 0 <= diagnostics["rounding_jaccard_order"] <= 1
    assert diagnostics["rounding_precision"] == "float64" and record["timings"]["rounding_s"] > 0
    assert spec.key != quick_specs("methods=[random]", "sparsities=[0.97]", "seeds=1")[0].key


def test_masks_at_keeps_a_prune_only_mask_and_measures_rounding_at_those_sparsities_only():
    overrides = ["methods=[magnitude]", "sparsities=[0.5,0.9]", "seeds=1", "train.epochs=0", "diagnostics.masks_at=[0.9]", "diagnostics.rounding=true"]
    specs = quick_specs(*overrides)
    dataset = load_trial_data(specs[0])
    records = {spec.sparsity: run_trial(spec, dataset=dataset) for spec in specs}
    assert "mask" not in records[0.5] and "mask" in records[0.9]
    assert "diagnostics" not in records[0.5] and records[0.9]["diagnostics"]["rounding_jaccard_dtype"] == 1.0


def test_an_architecture_method_counts_the_small_models_effective_weights_against_the_dense_ones():
    spec = quick_specs("methods=[scratch-e]", "sparsities=[0.9]", "seeds=1", "train.epochs=0")[0]
    record = run_trial(spec)
    assert record["status"] == "done", record.get("error")
    # a narrower dense network: every weight on a path, so effective is its whole weight count
    assert record["sparsity_effective"] == pytest.approx(record["sparsity_prunable"])
    assert [layer["effective"] for layer in record["masks"]["layers"]] == [layer["kept"] for layer in record["masks"]["layers"]]
    assert "mask" not in record
