"""Does the fast engine compile as intended here? Graph breaks, graphs, CUDA-graph skips, and
the weights it trains against the same engine run eagerly.

The engine's speed rests on its step compiling into few graphs without breaks and, on a GPU,
replaying as CUDA graphs; a break or a skipped CUDA graph does not fail anything, it only makes
the step slow, so this script makes them visible. It trains a masked ResNet-20 for `--steps`
steps per augmentation (crop-flip, and rrc-flip whose crop is roi_align) with the compiled
engine and with the same engine eager, in fp32, and prints torch._dynamo's counters and how
far the first batch's gradients are from float64 ones, compiled and eager. Runs with inductor on a CPU too (it needs a C++ compiler there).

    python benchmarks/compile_check.py --device cuda --out compile.json     # GPU machine
    python benchmarks/compile_check.py --device cpu --steps 3                # CPU pre-flight
    python benchmarks/compile_check.py --device cpu --steps 1 --batch 16 --backend aot_eager \
        --augments crop-flip                                                # rehearsal: no codegen

`--backend aot_eager` traces and captures the same graphs (Dynamo, AOT autograd) and runs them
without generating code: breaks and graphs are counted as with inductor, in seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters

import pai_bench
from pai_bench.config import TrainConfig
from pai_bench.data import BatchLoader, ImageSet
from pai_bench.engine import EngineSettings, FastTrainer


def made_images(count: int, size: int) -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(count) % 10)


def train(settings: EngineSettings, augment: str, steps: int, batch: int, device: torch.device, epochs: int = 2) -> tuple[dict[str, torch.Tensor], float, str | None]:
    """Weights after `epochs` epochs of `steps` full batches and a short one (an epoch's last),
    evaluating after them, the seconds it took, and why the engine fell back to eager if it did
    (then the compiled figures are the eager step's)."""
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0).to(device)
    masks = pai_bench.prune(model, "random", 0.9, [], seed=0).masks
    images = made_images(batch * steps + (batch // 2 if epochs > 1 else 0), 32)
    loader = BatchLoader(images, batch_size=batch, mean=(0.5,) * 3, std=(0.25,) * 3, augment=augment, shuffle=True, seed=0, device=device)
    evaluation = BatchLoader(images, batch_size=batch * 2, mean=(0.5,) * 3, std=(0.25,) * 3, device=device)
    trainer = FastTrainer(model, masks, TrainConfig(lr=0.05), device, settings)
    started = time.perf_counter()
    for epoch in range(epochs):  # from the second: replays, and a tensor lr that changed nothing
        if epoch:
            trainer.scheduler.step()
        trainer.train_epoch(loader)
    trainer.evaluate(evaluation)
    seconds = time.perf_counter() - started
    return {name: p.detach().float().cpu() for name, p in model.named_parameters()}, seconds, trainer.fallback


def first_batch_gradients(settings: EngineSettings, augment: str, batch: int, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Gradients of the first batch's loss from the engine (lr 0: one step leaves the weights
    as they were and the masked gradients in `.grad`), and the same loss in float64 by plain
    autograd: the yardstick for what fp32 rounding alone moves."""
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0).to(device)
    masks = pai_bench.prune(model, "random", 0.9, [], seed=0).masks
    images = made_images(batch, 32)

    def loader() -> BatchLoader:
        return BatchLoader(images, batch_size=batch, mean=(0.5,) * 3, std=(0.25,) * 3, augment=augment, shuffle=True, seed=0, device=device)

    reference = copy.deepcopy(model).double().train()
    FastTrainer(model, masks, TrainConfig(lr=0.0, weight_decay=0.0, momentum=0.0), device, settings).train_epoch(loader())
    engine = {name: p.grad.detach().double().cpu() for name, p in model.named_parameters()}
    batch = next(iter(loader()))
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name in masks:
                p.mul_(masks[name].to(p.device))
    torch.nn.functional.cross_entropy(reference(batch[0].double()), batch[1]).backward()
    exact = {name: (p.grad * masks[name].to(p.device) if name in masks else p.grad).detach().cpu() for name, p in reference.named_parameters()}
    return engine, exact


def relative_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest per-tensor ||a - b|| / ||b||."""
    return max(float((a[n] - b[n]).norm() / b[n].norm().clamp_min(1e-30)) for n in a)


def check(device: torch.device, augment: str, steps: int, batch: int, settings: EngineSettings, report: dict[str, Any], save: Callable[[], None]) -> None:
    """Fill `report` in, calling `save` after each part: a run stopped at a time limit keeps
    the graph counts even if the gradient comparison did not finish."""
    torch._dynamo.reset()
    counters.clear()
    _, compiled_s, fallback = train(settings, augment, steps, batch, device)
    report |= {
        "augment": augment,
        "graph_breaks": dict(Counter(counters["graph_break"])),
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
        "compiled_s": compiled_s,
        "engine_fallback": fallback,
    }
    save()
    report["eager_s"] = train(replace(settings, compile=False), augment, steps, batch, device)[1]
    # Gradients, not weights after training: on random labels, through sparse BatchNorm'd
    # layers, rounding grows fast (two eager runs on 1 and 2 threads differ by 1e-2 after 8
    # steps). BatchNorm gradients are sums with heavy cancellation, so fp32 itself is 1e-3 off
    # float64 there: the compiled step should be about as far from float64 as the eager one.
    torch._dynamo.reset()
    compiled, exact = first_batch_gradients(settings, augment, batch, device)
    eager, _ = first_batch_gradients(replace(settings, compile=False), augment, batch, device)
    report["gradient_error_compiled"] = relative_gap(compiled, exact)
    report["gradient_error_eager"] = relative_gap(eager, exact)
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="full batches per epoch (two epochs each)")
    parser.add_argument("--batch", type=int, default=128, help="the protocol's 128; smaller only to rehearse")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: the engine's for the device)")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: capture the graphs, generate no code)")
    parser.add_argument("--augments", nargs="+", default=["crop-flip", "rrc-flip"], choices=("crop-flip", "rrc-flip", "none"))
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    # fp32 and the contiguous layout, so the compiled and eager weights compare closely; the
    # compile mode is the device's (CUDA graphs on a GPU).
    settings = replace(EngineSettings.for_device(device), bf16=False, channels_last=False, compile=True, compile_backend=args.backend)
    if device.type != "cuda":
        settings = replace(settings, compile_mode=args.mode or "default")
    elif args.mode:
        settings = replace(settings, compile_mode=args.mode)
    rows: list[dict[str, Any]] = []
    header = {"device": str(device), "torch": torch.__version__, "batch": args.batch, "settings": settings.__dict__, "rows": rows}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(header, indent=2))

    for augment in args.augments:
        rows.append({})
        check(device, augment, args.steps, args.batch, settings, rows[-1], save)
    for row in rows:
        print(f"{row['augment']:9}: {row['unique_graphs']} graphs, {sum(row['graph_breaks'].values())} graph breaks, "
              f"{row['cudagraph_skips']} CUDA-graph skips; gradient error vs float64 {row['gradient_error_compiled']:.1e} compiled, "
              f"{row['gradient_error_eager']:.1e} eager; "
              f"{row['compiled_s']:.1f} s compiled (with compilation) / {row['eager_s']:.1f} s eager")
        for reason, count in row["graph_breaks"].items():
            print(f"    break x{count}: {reason}")


if __name__ == "__main__":
    main()
