"""The fast training engine: a compiled step per batch, data and augmentation on the device.

Why it exists: at the protocol's batch of 128 a ResNet-20 step is a few hundred small kernels,
and the reference loop is bound by launching them one by one from Python (and by the device
sync its running accuracy costs every step), not by the GPU's arithmetic. Here the input
preparation (crop, flip, normalise), the bf16 forward and backward, the gradient masking, the
SGD update and the re-masking are compiled, under CUDA graphs on a GPU, and the running loss
and accuracy stay on the device until the epoch ends.

The data an epoch sees is exactly the reference loop's: the loader's `raw()` gives the same
order and the same random draws, and the compiled step applies them with the loader's own
`prepare`. What differs on a GPU is the arithmetic (bf16, fused kernels), which is why the plain
fp32 loop in `pai_bench.training` stays as the reference this path is checked against
(`train.fast=false`). Like the device, `fast` is not part of the trial key (it changes the
arithmetic, not the protocol); each record's `engine` says which path trained it.

Compiling can fail where the engine was never tried (an older GPU, a torch whose inductor or
Triton does not work there). The trial then trains on the same engine eagerly (bf16 and
channels_last kept, only the compilation dropped) and says why in `fallback`, rather than
every trial of a suite failing on the machine's toolchain.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from pai_bench.schema import TrainConfig
from pai_bench.data import BatchLoader


#: Steps of each kind (loader, training or evaluation, batch shape) run with the state saved
#: beforehand: the first compiles that kind's graphs, under CUDA graphs the second records
#: them and the third is the first replay. A failure in one of them falls back to eager.
SETTLING_STEPS = 3


@dataclass(frozen=True)
class EngineSettings:
    """How the fast path runs on a device. None of it changes what is trained, only the
    arithmetic's precision and the kernels' scheduling."""

    bf16: bool = False  # autocast the forward and backward to bfloat16
    channels_last: bool = False  # NHWC memory layout (tensor-core friendly convolutions)
    compile: bool = False  # torch.compile the forward and the update; False runs eagerly
    compile_mode: str = "reduce-overhead"  # CUDA graphs: one launch per compiled region
    compile_backend: str = "inductor"

    @classmethod
    def for_device(cls, device: torch.device) -> EngineSettings | None:
        """CUDA: bf16 where supported, channels_last, CUDA graphs (`reduce-overhead`).

        CPU: channels_last, bf16 where the CPU has bf16 arithmetic (`cpu_has_bf16`), eager.
        Measured with benchmarks/cpu_throughput.py (benchmarks/README.md): on a 2-core AVX2
        EPYC, channels_last makes a whole epoch 1.5x faster than the reference loop in fp32;
        compiling the step with inductor trained slower than eager (326 against 352 images/s)
        and only its evaluation gained, after minutes of compiling, so the CPU path stays
        eager. bf16 measured 2.3x fp32's speed on an EPYC with avx512_bf16 (DESIGN.md); on one
        without, oneDNN emulates it at a tenth of fp32's speed. None elsewhere (MPS): the
        reference loop.
        """
        if device.type == "cuda":
            return cls(bf16=torch.cuda.is_bf16_supported(), channels_last=True, compile=True)
        if device.type == "cpu":
            return cls(bf16=cpu_has_bf16(), channels_last=True, compile=False)
        return None

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX on x86).

    oneDNN runs bf16 convolutions on other CPUs too, by converting to fp32 and back, which is
    slower than staying in fp32; there the CPU path trains in fp32 (with channels_last)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


class FastTrainer:
    """Trains `model` in place with `masks` held at zero, one compiled step per batch; the
    caller steps `scheduler` after each epoch, as with the reference loop.

    Masked weights stay exactly zero the way `MaskEnforcer` keeps them (gradients masked
    before the optimizer, so momentum and weight decay see zeros; weights re-masked after it),
    but as two fused multiplies inside the compiled update instead of per-parameter hooks.

    If a step fails while its kind is compiling (its first `SETTLING_STEPS` steps), the state
    saved before it is put back and the step runs again eagerly, as does every later one:
    `engine` becomes "fast-eager" and `fallback` holds the error's one-line reason. An error
    that the eager step raises too is the trial's own, and propagates; so does running out of
    GPU memory, which is about the trial's share of the GPU, not about compiling.
    """

    def __init__(
        self,
        model: nn.Module,
        masks: Mapping[str, torch.Tensor],
        train_config: TrainConfig,
        device: torch.device,
        settings: EngineSettings,
    ) -> None:
        self.model = model
        self.device = device
        self.settings = settings
        self.engine = "fast"
        self.fallback: str | None = None  # why the step runs eagerly, when compiling it failed
        self._settled: Counter[tuple] = Counter()
        if settings.channels_last:
            model.to(memory_format=torch.channels_last)
        params = dict(model.named_parameters())
        self.masked = [params[name] for name in masks]
        self.masks = [mask.to(device, params[name].dtype) for name, mask in masks.items()]
        # A tensor learning rate lets the scheduler change it without recompiling the update.
        lr: float | torch.Tensor = torch.tensor(train_config.lr, device=device) if settings.compile else train_config.lr
        self.optimizer = torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=train_config.momentum,
            nesterov=train_config.nesterov,
            weight_decay=train_config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(train_config.milestones), gamma=train_config.gamma
        )
        self.optimizer._opt_called = True  # what the bypassed wrapper records; the scheduler checks it
        self._compiled: dict[Callable, Callable] = {}
        self._update = self._compile(self._masked_update)
        if self.masked:  # a dense or scratch-trained model has nothing to mask
            with torch.no_grad():
                torch._foreach_mul_(self.masked, self.masks)

    def _compile(self, function: Callable) -> Callable:
        if not self.settings.compile:
            return function
        options = {"backend": self.settings.compile_backend, "dynamic": False}
        if self.settings.compile_backend == "inductor":
            options["mode"] = self.settings.compile_mode
        return torch.compile(function, **options)

    def _forward(self, prepare: Callable, images: torch.Tensor, labels: torch.Tensor, draws: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = prepare(images, draws)
        if self.settings.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.bf16):
            logits = self.model(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        correct = (logits.argmax(dim=1) == labels).sum()
        return loss, correct

    def _masked_update(self) -> None:
        if self.masked:
            torch._foreach_mul_([param.grad for param in self.masked], self.masks)
        # The class's step, not the instance's: the scheduler wraps `optimizer.step` in a
        # function torch.compile will not trace, which would leave the update eager.
        type(self.optimizer).step(self.optimizer)
        if self.masked:
            torch._foreach_mul_(self.masked, self.masks)

    def _new_step(self) -> None:
        """CUDA graphs reuse their output buffers on the next replay; each step's outputs are
        summed before it, and this tells the graph trees a new step begins."""
        if self.settings.compile and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()

    def _forward_for(self, prepare: Callable) -> Callable:
        """One compiled forward per loader, since each bakes its own augmentation in."""
        if prepare not in self._compiled:
            self._compiled[prepare] = self._compile(lambda images, labels, draws: self._forward(prepare, images, labels, draws))
        return self._compiled[prepare]

    def train_epoch(self, loader: BatchLoader) -> tuple[float, float]:
        """One epoch; (mean loss, accuracy in percent) read back once, at its end."""
        self.model.train()
        return self._epoch(loader, update=True)

    @torch.no_grad()
    def evaluate(self, loader: BatchLoader) -> tuple[float, float]:
        """(mean loss, accuracy in percent) over the whole loader."""
        self.model.eval()
        return self._epoch(loader, update=False)

    def _epoch(self, loader: BatchLoader, update: bool) -> tuple[float, float]:
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        for images, labels, draws in loader.raw():
            loss, batch_correct = self._step(loader.prepare, images, labels, draws, update)
            loss_sum += loss.detach().double() * labels.numel()
            correct += batch_correct
            count += labels.numel()
        return float(loss_sum) / max(count, 1), 100.0 * int(correct) / max(count, 1)

    def _step(self, prepare: Callable, images: torch.Tensor, labels: torch.Tensor, draws: tuple, update: bool) -> tuple[torch.Tensor, torch.Tensor]:
        kind = (prepare, update, tuple(images.shape))
        if not self.settings.compile or self._settled[kind] >= SETTLING_STEPS:
            return self._run_step(prepare, images, labels, draws, update)
        saved = self._state()
        try:
            outputs = self._run_step(prepare, images, labels, draws, update)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as error:  # whatever compiling raised; a real bug raises again eagerly
            self._fall_back(error, saved)
            return self._run_step(prepare, images, labels, draws, update)
        self._settled[kind] += 1
        return outputs

    def _run_step(self, prepare: Callable, images: torch.Tensor, labels: torch.Tensor, draws: tuple, update: bool) -> tuple[torch.Tensor, torch.Tensor]:
        self._new_step()
        loss, correct = self._forward_for(prepare)(images, labels, draws)
        if update:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                self._update()
        return loss, correct

    def _state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Weights, buffers and momenta as they are: a failed compiled step may have run its
        forward (BatchNorm statistics moved) before its backward or update failed to compile."""
        model = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        optimizer = {
            param: {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in state.items()}
            for param, state in self.optimizer.state.items()
        }
        return model, optimizer

    def _fall_back(self, error: Exception, saved: tuple[dict[str, torch.Tensor], dict]) -> None:
        self.fallback = one_line_reason(error)
        warnings.warn(f"compiling the fast engine's step failed; this trial trains on it eagerly: {self.fallback}", RuntimeWarning, stacklevel=2)
        self.engine = "fast-eager"
        self.settings = replace(self.settings, compile=False)
        self._compiled.clear()
        self._update = self._masked_update
        model, optimizer = saved
        with torch.no_grad():
            self.model.load_state_dict(model)
        self.optimizer.state.clear()
        self.optimizer.state.update(optimizer)
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def precision(self) -> str:
        return self.settings.precision

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def close(self) -> None:
        """Nothing to release: the masking lives inside the compiled update."""



def one_line_reason(error: BaseException) -> str:
    """The error's type and the first line of its message; for a backend that raised
    (torch._dynamo's BackendCompilerFailed), the backend's own error, which says what broke."""
    inner = getattr(error, "inner_exception", None)
    cause = inner if isinstance(inner, BaseException) else error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    return f"{type(error).__name__}: {text}" if cause is not error else text
