"""Does the fast engine compile as intended here? Graph breaks, graphs, CUDA-graph skips, and
the weights it trains against the same engine run eagerly.

The engine's speed rests on its step compiling into few graphs without breaks and, on a GPU,
replaying as CUDA graphs; a break or a skipped CUDA graph does not fail anything, it only makes
the step slow, so this script makes them visible. It trains a masked ResNet-20 for `--steps`
steps per augmentation (crop-flip, and rrc-flip whose crop is roi_align) with the compiled
engine and with the same engine eager, in fp32, and prints torch._dynamo's counters and the
largest weight difference. Runs with inductor on a CPU too (it needs a C++ compiler there).

    python benchmarks/compile_check.py --device cuda --out compile.json     # GPU machine
    python benchmarks/compile_check.py --device cpu --steps 3                # CPU pre-flight
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters

import pai_bench
from pai_bench.config import TrainConfig
from pai_bench.data import BatchLoader, ImageSet
from pai_bench.engine import EngineSettings, FastTrainer

BATCH = 128


def made_images(count: int, size: int) -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(count) % 10)


def train(settings: EngineSettings, augment: str, steps: int, device: torch.device) -> tuple[dict[str, torch.Tensor], float]:
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0).to(device)
    masks = pai_bench.prune(model, "random", 0.9, [], seed=0).masks
    images = made_images(BATCH * steps + BATCH // 2, 32)  # a short last batch, as an epoch has
    loader = BatchLoader(images, batch_size=BATCH, mean=(0.5,) * 3, std=(0.25,) * 3, augment=augment, shuffle=True, seed=0, device=device)
    evaluation = BatchLoader(images, batch_size=BATCH * 2, mean=(0.5,) * 3, std=(0.25,) * 3, device=device)
    trainer = FastTrainer(model, masks, TrainConfig(lr=0.05), device, settings)
    started = time.perf_counter()
    trainer.train_epoch(loader)
    trainer.scheduler.step()
    trainer.train_epoch(loader)  # a second epoch: replays, and a tensor lr that changed nothing
    trainer.evaluate(evaluation)
    seconds = time.perf_counter() - started
    return {name: p.detach().float().cpu() for name, p in model.named_parameters()}, seconds


def check(device: torch.device, augment: str, steps: int, settings: EngineSettings) -> dict[str, Any]:
    torch._dynamo.reset()
    counters.clear()
    compiled, compiled_s = train(settings, augment, steps, device)
    report = {
        "augment": augment,
        "graph_breaks": dict(Counter(counters["graph_break"])),
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
        "compiled_s": compiled_s,
    }
    eager, eager_s = train(replace(settings, compile=False), augment, steps, device)
    report["eager_s"] = eager_s
    report["max_weight_gap"] = max(float((compiled[n] - eager[n]).abs().max()) for n in compiled)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="full batches per epoch (two epochs each)")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: the engine's for the device)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    # fp32 and the contiguous layout, so the compiled and eager weights compare closely; the
    # compile mode is the device's (CUDA graphs on a GPU).
    settings = replace(EngineSettings.for_device(device), bf16=False, channels_last=False, compile=True)
    if device.type != "cuda":
        settings = replace(settings, compile_mode=args.mode or "default")
    elif args.mode:
        settings = replace(settings, compile_mode=args.mode)
    rows = [check(device, augment, args.steps, settings) for augment in ("crop-flip", "rrc-flip")]
    for row in rows:
        print(f"{row['augment']:9}: {row['unique_graphs']} graphs, {sum(row['graph_breaks'].values())} graph breaks, "
              f"{row['cudagraph_skips']} CUDA-graph skips, weights vs eager {row['max_weight_gap']:.1e}, "
              f"{row['compiled_s']:.1f} s compiled (with compilation) / {row['eager_s']:.1f} s eager")
        for reason, count in row["graph_breaks"].items():
            print(f"    break x{count}: {reason}")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": str(device), "torch": torch.__version__, "settings": settings.__dict__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
