"""Prototype: K trials of one architecture trained as one step in one process (torch.func).

Why: at the protocol's batch a ResNet-20 step is launch-bound even under CUDA graphs, and
processes packed on one GPU time-slice it rather than overlap (DESIGN.md, Speed: 4 packed
~11.6x the reference pipeline, 8 packed ~15x, short of issue 8's 20x). Stacking K trials'
weights (`torch.func.stack_module_state`) and vmapping one step over them turns K small
kernels into one K-times larger kernel per layer, so launches are shared by K trials. This
module is the measurement (`throughput.py --stacked K`) and its correctness check, not yet an
engine the executor uses: whether it pays has to be measured on a GPU first.

Each trial keeps its own weights, masks, data order and augmentation draws (its own loader);
they share the architecture and the training hyperparameters. SGD is written out on the
stacked tensors (elementwise, so it is K independent SGDs): gradients masked, momentum, weight
decay, weights re-masked, as `pai_bench.training` does per trial.

    python benchmarks/stacked.py --check     # CPU: stacked training = K separate ones
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from pai_bench.config import TrainConfig
from pai_bench.data import BatchLoader
from pai_bench.engine import EngineSettings


class StackedTrainer:
    """Trains `models` (one architecture) with their `masks` as one vmapped, compiled step.

    The models' own parameters are not updated: the trained weights are `self.params`
    (stacked, trial first); `unstacked(k)` gives trial k's.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        masks: Sequence[dict[str, torch.Tensor]],
        train_config: TrainConfig,
        device: torch.device,
        settings: EngineSettings,
    ) -> None:
        if train_config.nesterov:
            raise ValueError("the prototype writes plain momentum SGD out; nesterov is not done")
        self.device, self.settings, self.config = device, settings, train_config
        params, buffers = stack_module_state([model.to(device).train() for model in models])
        self.params = {name: value.detach() for name, value in params.items()}
        self.buffers = buffers
        self.masks = {name: torch.stack([m[name] for m in masks]).to(device, params[name].dtype) for name in masks[0]}
        self.momentum = {name: torch.zeros_like(value) for name, value in self.params.items()}
        self.lr = torch.tensor(train_config.lr, device=device, dtype=next(iter(self.params.values())).dtype)
        self.base = copy.deepcopy(models[0]).to("meta")
        with torch.no_grad():
            for name, mask in self.masks.items():
                self.params[name].mul_(mask)
        self._compiled = self._step
        if settings.compile:
            # The state the step updates in place lives outside any module: marked static, CUDA
            # graphs keep it in place instead of refusing to graph a step that mutates inputs.
            for state in (self.params, self.buffers, self.momentum, self.masks):
                for tensor in state.values():
                    torch._dynamo.mark_static_address(tensor)
            torch._dynamo.mark_static_address(self.lr)
            options = {"backend": settings.compile_backend}
            if settings.compile_backend == "inductor":
                options["mode"] = settings.compile_mode
            self._compiled = torch.compile(self._step, **options)

    def _loss(self, params, buffers, inputs, labels):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.bf16):
            logits = functional_call(self.base, (params, buffers), (inputs,))
        # the loss in float32 at least (bf16 logits), in the model's float64 when it has it
        logits_for_loss = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits_for_loss, labels), (logits.argmax(dim=1) == labels).sum()

    def _step(self, prepares, batches):
        inputs = torch.stack([prepare(images, draws) for prepare, (images, _, draws) in zip(prepares, batches)])
        labels = torch.stack([labels for _, labels, _ in batches])
        grads, (loss, correct) = vmap(grad_and_value(self._loss, has_aux=True), in_dims=(0, 0, 0, 0))(self.params, self.buffers, inputs, labels)
        with torch.no_grad():
            config = self.config
            for name, weight in self.params.items():
                update = grads[name] + config.weight_decay * weight
                if name in self.masks:
                    update = update * self.masks[name]
                self.momentum[name].mul_(config.momentum).add_(update)
                weight.sub_(self.lr * self.momentum[name])
                if name in self.masks:
                    weight.mul_(self.masks[name])
        return loss.detach(), correct

    def train_epoch(self, loaders: Sequence[BatchLoader]) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch of every trial; per trial (mean loss, accuracy in percent), read once."""
        prepares = tuple(loader.prepare for loader in loaders)
        loss_sum = torch.zeros(len(loaders), dtype=torch.float64, device=self.device)
        correct = torch.zeros(len(loaders), dtype=torch.int64, device=self.device)
        count = 0
        for batches in zip(*(loader.raw() for loader in loaders)):
            if self.settings.compile and self.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            loss, batch_correct = self._compiled(prepares, batches)
            size = batches[0][1].numel()
            loss_sum += loss.double() * size
            correct += batch_correct
            count += size
        return (loss_sum / max(count, 1)).cpu(), (100.0 * correct.double() / max(count, 1)).cpu()

    def unstacked(self, k: int) -> dict[str, torch.Tensor]:
        return {name: value[k] for name, value in {**self.params, **self.buffers}.items()}


class Float64Input(nn.Module):
    """Casts the loader's float32 inputs for a float64 model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def check() -> None:
    """Three masked ResNet-20 trials, stacked and one by one (the reference loop, its own
    loader each), in float64: training on random labels through BatchNorm amplifies float32
    rounding past 1e-2 within six steps (the reference loop on 1 and 2 threads differs that
    much from itself), which would hide a wrong update; float64 keeps rounding below 1e-9."""
    import pai_bench
    from pai_bench.data import ImageSet
    from pai_bench.training import make_trainer

    device = torch.device("cpu")
    config = TrainConfig(lr=0.05, momentum=0.9, weight_decay=5e-3, milestones=[])
    generator = torch.Generator().manual_seed(0)
    images = ImageSet(torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=generator), torch.arange(96) % 10)

    def loader(seed: int) -> BatchLoader:
        return BatchLoader(images, batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, augment="crop-flip", shuffle=True, seed=seed)

    models = [nn.Sequential(Float64Input(), pai_bench.build_model("resnet20", num_classes=10, seed=seed).double()) for seed in range(3)]
    masks = [pai_bench.prune(model, "magnitude", s, [], seed=0).masks for model, s in zip(models, (0.5, 0.9, 0.99))]
    models_before = [{name: value.clone() for name, value in m.state_dict().items()} for m in models]
    stacked = StackedTrainer([copy.deepcopy(m) for m in models], masks, config, device, EngineSettings())
    for _ in range(2):
        stacked.train_epoch([loader(seed) for seed in range(3)])
    for k, (model, mask) in enumerate(zip(models, masks)):
        trainer = make_trainer(model, mask, config)
        for _ in range(2):
            trainer.train_epoch(loader(k))
        trainer.close()
        mine = stacked.unstacked(k)
        state = {name: value for name, value in model.state_dict().items() if value.is_floating_point()}
        gap = max(float((value - mine[name]).abs().max()) for name, value in state.items())
        moved = max(float((value - models_before[k][name]).abs().max()) for name, value in state.items())
        print(f"trial {k}: weights moved by up to {moved:.1e} in 6 steps; stacked vs alone differ by {gap:.1e}")
        if gap > 1e-9:
            raise SystemExit(f"trial {k}: the stacked step does not train what the reference loop trains")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare stacked with one-by-one training on the CPU")
    if parser.parse_args().check:
        check()
    else:
        parser.print_help()
