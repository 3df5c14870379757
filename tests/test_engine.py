"""The fast engine against the reference loop: same data, same update, masks held at zero.

A GPU is not needed for what can go wrong in the engine's logic: the draws it applies, the
masking inside the compiled update, the scheduler driving a tensor learning rate. CUDA graphs
and bf16 are the GPU's part and are measured in benchmarks/throughput.py.
"""

from __future__ import annotations

import copy
from collections import Counter
import math

import pytest
import torch

from pai_bench.config import TrainConfig
from pai_bench.data import BatchLoader, ImageSet
from pai_bench.engine import EngineSettings, FastTrainer
from pai_bench.masks import MaskEnforcer, prunable_parameters
from pai_bench.training import _train_epoch, make_optimizer
from tests.conftest import TinyNet

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
EAGER = EngineSettings()
# Dynamo and AOT autograd capture the graphs as on a GPU; only inductor's code generation is
# skipped, which would compile C++ for seconds on a CPU.
COMPILED = EngineSettings(compile=True, compile_backend="aot_eager")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(n: int = 22, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator), torch.arange(n) % 10)


def loader(augment: str = "crop-flip", seed: int = 3) -> BatchLoader:
    # 22 images in batches of 8: two full batches and a short one, as a real epoch ends
    return BatchLoader(images(), batch_size=8, mean=MEAN, std=STD, augment=augment, padding=2, shuffle=True, seed=seed)


def half_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return {name: torch.rand(p.shape, generator=generator) < 0.5 for name, p in prunable_parameters(model).items()}


TRAIN = TrainConfig(epochs=3, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, milestones=[1, 2], gamma=0.1)


@pytest.mark.parametrize("augment", ["crop-flip", "rrc-flip", "none"])
def test_eager_fp32_fast_path_is_the_reference_loop(augment):
    """Same draws, same masked SGD: the weights after three epochs (two lr milestones) agree
    with the reference loop's to rounding."""
    torch.manual_seed(0)
    reference = TinyNet()
    fast = copy.deepcopy(reference)
    masks = half_masks(reference)

    optimizer, scheduler = make_optimizer(reference, TRAIN)
    enforcer = MaskEnforcer(reference, masks)
    reference_batches, fast_batches = loader(augment), loader(augment)
    expected = []
    for _ in range(3):
        expected.append(_train_epoch(reference, reference_batches, optimizer, enforcer))
        scheduler.step()
    enforcer.remove()

    trainer = FastTrainer(fast, masks, TRAIN, CPU, EAGER)
    got = []
    for _ in range(3):
        got.append(trainer.train_epoch(fast_batches))
        trainer.scheduler.step()

    assert trainer.lr == pytest.approx(0.1 * 0.1 * 0.1)
    for (loss, acc), (ref_loss, ref_acc) in zip(got, expected, strict=True):
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        assert acc == ref_acc
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def train_two_epochs_and_check_masks(settings: EngineSettings) -> FastTrainer:
    """Two epochs on `settings`; every pruned weight and its momentum exactly zero (the weights
    fp32 whatever the autocast), every kept weight moved."""
    torch.manual_seed(0)
    model = TinyNet()
    before = copy.deepcopy(model.state_dict())
    masks = half_masks(model)
    trainer = FastTrainer(model, masks, TRAIN, CPU, settings)
    for _ in range(2):
        loss, _ = trainer.train_epoch(loader())
        trainer.scheduler.step()
        assert math.isfinite(loss)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert params[name].dtype == torch.float32
        assert torch.all(params[name][~mask] == 0), name
        assert torch.all(params[name][mask] != before[name][mask]), name
        assert torch.all(trainer.optimizer.state[params[name]]["momentum_buffer"][~mask] == 0), name
    return trainer


def test_compiled_step_keeps_masked_weights_at_zero_and_trains_the_rest():
    trainer = train_two_epochs_and_check_masks(COMPILED)
    # the scheduler drove the tensor learning rate through both milestones
    assert isinstance(trainer.optimizer.param_groups[0]["lr"], torch.Tensor)
    assert trainer.lr == pytest.approx(0.001)


def test_compiled_step_matches_the_eager_step():
    torch.manual_seed(0)
    eager_model = TinyNet()
    compiled_model = copy.deepcopy(eager_model)
    masks = half_masks(eager_model)
    eager = FastTrainer(eager_model, masks, TRAIN, CPU, EAGER)
    compiled = FastTrainer(compiled_model, masks, TRAIN, CPU, COMPILED)
    for _ in range(2):
        eager_metrics = eager.train_epoch(loader())
        compiled_metrics = compiled.train_epoch(loader())
        eager.scheduler.step()
        compiled.scheduler.step()
        assert compiled_metrics[0] == pytest.approx(eager_metrics[0], rel=1e-4)
    test = BatchLoader(images(13, seed=9), batch_size=5, mean=MEAN, std=STD)
    assert compiled.evaluate(test) == pytest.approx(eager.evaluate(test), rel=1e-4)
    for name, value in eager_model.state_dict().items():
        torch.testing.assert_close(compiled_model.state_dict()[name], value, rtol=1e-4, atol=1e-5)


def test_the_optimizer_step_is_compiled_not_skipped():
    """The scheduler wraps `optimizer.step` in a function torch.compile refuses to trace; the
    engine must reach the optimizer's own step, or the whole update runs eagerly. The only
    breaks left are the two the optimizer asks for around its step."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = TinyNet()
    trainer = FastTrainer(model, half_masks(model), TRAIN, CPU, COMPILED)
    trainer.train_epoch(loader())
    trainer.scheduler.step()  # no warning that it ran before optimizer.step
    breaks = Counter(counters["graph_break"])
    assert not [reason for reason in breaks if "skipped" in reason], breaks
    assert sum(breaks.values()) == 2 and all("graph_break()" in reason for reason in breaks), breaks


def test_settings_per_device(monkeypatch):
    import pai_bench.engine as engine

    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: True)
    assert EngineSettings.for_device(CPU) == EngineSettings(bf16=True, channels_last=True, compile=False)
    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: False)
    assert EngineSettings.for_device(CPU) == EngineSettings(bf16=False, channels_last=True, compile=False)
    assert EngineSettings.for_device(torch.device("mps")) is None


def test_cpu_bf16_follows_the_cpus_own_flags(monkeypatch):
    import pai_bench.engine as engine

    for avx512_bf16, amx, expected in [(True, False, True), (False, True, True), (False, False, False)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda value=avx512_bf16: value)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=amx: value)
        assert engine.cpu_has_bf16() is expected


@pytest.mark.parametrize("has_bf16", [True, False], ids=["bf16-cpu", "fp32-cpu"])
def test_train_on_a_cpu_takes_the_fast_engine_unless_fast_is_false(monkeypatch, has_bf16):
    """`train.fast=true` trains on the engine in bf16 where the CPU has bf16 arithmetic and in
    fp32 where it has not; `train.fast=false` is the reference loop. The record-facing fields
    say which, and `fast` (like the device) stays out of the trial key."""
    import dataclasses

    import pai_bench.engine as engine
    from pai_bench.training import ReferenceTrainer, make_trainer, train
    from pai_bench.trial import NOT_IN_KEY

    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: has_bf16)
    torch.manual_seed(0)
    model = TinyNet()
    masks = half_masks(model)
    trainer = make_trainer(copy.deepcopy(model), masks, TRAIN)
    assert isinstance(trainer, FastTrainer) and trainer.settings.bf16 is has_bf16
    assert isinstance(make_trainer(copy.deepcopy(model), masks, dataclasses.replace(TRAIN, fast=False)), ReferenceTrainer)
    test = BatchLoader(images(13, seed=9), batch_size=5, mean=MEAN, std=STD)
    fast = train(copy.deepcopy(model), masks, loader(), test, dataclasses.replace(TRAIN, epochs=1))
    assert (fast.engine, fast.precision) == ("fast", "bf16" if has_bf16 else "fp32")
    reference = train(copy.deepcopy(model), masks, loader(), test, dataclasses.replace(TRAIN, epochs=1, fast=False))
    assert (reference.engine, reference.precision) == ("reference", "fp32")
    assert ("train", "fast") in NOT_IN_KEY


def test_a_cpu_trains_narrow_convolutions_without_channels_last():
    """torch's oneDNN channels_last backward crashed the process on 1- and 2-channel convolutions
    (Scratch-E's ResNet-20 at 99 %); such a network trains NCHW, a 16-channel one channels_last."""
    from torch import nn

    from pai_bench.training import make_trainer

    narrow = nn.Sequential(nn.Conv2d(3, 1, 3), nn.ReLU(), nn.Conv2d(1, 16, 3))
    wide = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3))
    assert not make_trainer(narrow, {}, TRAIN).settings.channels_last
    assert make_trainer(wide, {}, TRAIN).settings.channels_last


def test_bf16_steps_on_a_cpu_keep_masked_weights_and_momenta_exactly_zero():
    """Autocast computes in bf16 but the weights, their gradients' masking and the update stay
    fp32: a pruned weight is 0.0 exactly after every step, not a bf16 rounding of it."""
    train_two_epochs_and_check_masks(EngineSettings(bf16=True, channels_last=True))


def test_bf16_on_a_cpu_trains_close_to_fp32():
    """bf16 changes the arithmetic, not the update: after three epochs the weights are those
    of the fp32 engine to within bf16's rounding, far from where they started."""
    torch.manual_seed(0)
    start = TinyNet()
    masks = half_masks(start)
    models = {}
    for bf16 in (False, True):
        model = copy.deepcopy(start)
        trainer = FastTrainer(model, masks, TRAIN, CPU, EngineSettings(bf16=bf16, channels_last=True))
        batches = loader()
        for _ in range(3):
            trainer.train_epoch(batches)
            trainer.scheduler.step()
        models[bf16] = model.state_dict()
    for name, value in models[False].items():
        if value.is_floating_point() and name in dict(start.named_parameters()):
            moved = (value - start.state_dict()[name]).norm()
            assert (models[True][name] - value).norm() < 0.1 * moved, name


# --- the fallback when compiling fails ------------------------------------------------------


def _raises_on_compile(graph, example_inputs):
    raise RuntimeError("no working C++ compiler\nthe rest of the compiler's output")


def _raises_when_run(graph, example_inputs):
    def run(*args):
        raise RuntimeError("CUDA graph capture failed")

    return run


def _update_fails_to_compile(graph, example_inputs):
    """Compiles the forward (which runs, moving BatchNorm's statistics) and fails on the
    update, after the backward: the step has changed state before it fails."""
    if any(node.target is torch._foreach_mul_ for node in graph.graph.nodes):
        raise RuntimeError("triton: out of resources in the update")
    return graph.forward


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        (_raises_on_compile, "BackendCompilerFailed: RuntimeError: no working C++ compiler"),
        (_raises_when_run, "RuntimeError: CUDA graph capture failed"),
        (_update_fails_to_compile, "BackendCompilerFailed: RuntimeError: triton: out of resources in the update"),
    ],
    ids=["at-compile", "at-first-call", "in-the-update"],
)
def test_a_step_that_fails_to_compile_trains_eagerly_and_says_why(backend, reason):
    """The failed step is undone and rerun eagerly: the weights, BatchNorm statistics and
    momenta end as the eager engine's, and the trainer names the compile error."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager_model = TinyNet()
    fallen_model = copy.deepcopy(eager_model)
    masks = half_masks(eager_model)
    eager = FastTrainer(eager_model, masks, TRAIN, CPU, EAGER)
    fallen = FastTrainer(fallen_model, masks, TRAIN, CPU, EngineSettings(compile=True, compile_backend=backend))
    test = BatchLoader(images(13, seed=9), batch_size=5, mean=MEAN, std=STD)
    with pytest.warns(RuntimeWarning, match="trains on it eagerly"):
        fallen_metrics = [fallen.train_epoch(loader()), fallen.evaluate(test)]
    eager_metrics = [eager.train_epoch(loader()), eager.evaluate(test)]

    assert fallen.engine == "fast-eager" and eager.engine == "fast" and eager.fallback is None
    assert fallen.fallback == reason
    assert fallen_metrics == eager_metrics
    for name, value in eager_model.state_dict().items():
        torch.testing.assert_close(fallen_model.state_dict()[name], value, rtol=0, atol=0)
    for eager_param, fallen_param in zip(eager_model.parameters(), fallen_model.parameters(), strict=True):
        torch.testing.assert_close(
            fallen.optimizer.state[fallen_param]["momentum_buffer"], eager.optimizer.state[eager_param]["momentum_buffer"], rtol=0, atol=0
        )


def test_an_error_once_the_step_has_compiled_is_not_hidden():
    """Past its compiling steps a kind of step is compiled code that worked: an error there is
    the trial's, not the toolchain's, and fails it rather than being retried eagerly."""
    torch._dynamo.reset()
    broken = {"now": False}

    def breaks_later(graph, example_inputs):
        def run(*args):
            if broken["now"]:
                raise RuntimeError("illegal memory access")
            return graph.forward(*args)

        return run

    model = TinyNet()
    trainer = FastTrainer(model, half_masks(model), TRAIN, CPU, EngineSettings(compile=True, compile_backend=breaks_later))
    batches = loader()
    for _ in range(2):  # the two full batches of each epoch: four steps of their kind
        trainer.train_epoch(batches)
    broken["now"] = True
    with pytest.raises(RuntimeError, match="illegal memory access"):
        trainer.train_epoch(batches)
    assert trainer.engine == "fast" and trainer.fallback is None
