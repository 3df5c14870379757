"""Training throughput of ResNet-20 on CIFAR-10: the PaI repos' pipeline against pai-bench's.

In one run on one device (issue 8's targets, on one H100: b/a >= 3, c/a >= 20, peak memory
per trial <= 2 GB):

(a) reference: the PaI repos' pipeline, an in-memory uint8 dataset behind PIL transforms
    (RandomCrop 32 pad 4, RandomHorizontalFlip, ToTensor, Normalize) and a DataLoader with
    `--workers` workers, fp32, a host sync per step for the running accuracy;
(b) pai-bench's fast engine, one trial: data resident on the device, augmentation inside the
    compiled step, bf16 and channels_last, CUDA graphs;
(c) `--packed` trials of (b) side by side, each its own process (as Ray packs them), for each
    count given (4 and 8 by default);
(d) `--stacked` trials in one process as one vmapped step (`stacked.py`, a prototype that the
    executor does not use yet: this measures whether it would pay);
(e) pai-bench's fp32 loop (`train.fast=false`) on the same device-resident data: what the
    reference path costs where the engine is checked against it.

Prints images/s and the ratios to (a), and writes JSON (`--out`) after each measurement. Peak
memory per trial is torch's allocator's: `peak_memory_gb` allocated, `peak_reserved_gb` held
(what packing trials on one GPU must fit; the CUDA context, about 0.5 GB a process, is neither).
The batch is the protocol's 128: speed must not change the protocol (`--batch` only shrinks a
rehearsal).

    python benchmarks/throughput.py --data cifar10 --out throughput.json      # GPU machine
    python benchmarks/throughput.py --data imagefolder --root /tmp/cifar10-jpeg   # the shared JPEGs
    python benchmarks/throughput.py --device cpu --data quickstart --steps 5 --packed 2 --workers 2   # smoke
    python benchmarks/throughput.py --device cpu --data quickstart --steps 2 --batch 16 --workers 0 \
        --packed 2 --stacked 2 --compile-backend aot_eager                # rehearsal of the compiled paths
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time
from dataclasses import asdict, replace
from itertools import islice

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

import pai_bench
from pai_bench.config import TrainConfig
from pai_bench.data import BatchLoader, load_dataset
from pai_bench.engine import EngineSettings, FastTrainer
from pai_bench.masks import prunable_parameters
from pai_bench.training import ReferenceTrainer
from stacked import StackedTrainer


class PILImages(torch.utils.data.Dataset):
    """The repos' dataset: HWC uint8 arrays in memory, a PIL image per example."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.arrays = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.arrays[index])), self.labels[index]


def reference_rate(dataset, device: torch.device, steps: int, batch: int, workers: int) -> dict:
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(dataset.mean, dataset.std),
        ]
    )
    source = PILImages(dataset.train.images, dataset.train.labels, transform)
    loader = DataLoader(source, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda", drop_last=True, persistent_workers=workers > 0)
    model = pai_bench.build_model("resnet20", num_classes=dataset.num_classes, seed=0).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()

    def run(count: int) -> int:
        done, correct = 0, 0
        while done < count:
            for inputs, targets in loader:
                inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                logits = model(inputs)
                loss = F.cross_entropy(logits, targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                correct += int((logits.argmax(1) == targets).sum())
                done += 1
                if done == count:
                    break
        return correct

    run(min(steps, 10))  # warm-up: workers started, cuDNN autotuned
    seconds = timed(lambda: run(steps), device)
    return {"images_per_s": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps, "steps": steps}


def engine_trainer(dataset, device: torch.device, batch: int, settings: EngineSettings) -> tuple[FastTrainer, BatchLoader]:
    model = pai_bench.build_model("resnet20", num_classes=dataset.num_classes, seed=0).to(device)
    loader = BatchLoader(dataset.train, batch_size=batch, mean=dataset.mean, std=dataset.std, augment="crop-flip", padding=4, shuffle=True, drop_last=True, seed=0, device=device)
    return FastTrainer(model, dense_masks(model), TrainConfig(), device, settings), loader


def dense_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_parameters(model).items()}


def engine_rate(dataset, device: torch.device, steps: int, batch: int, settings: EngineSettings) -> dict:
    trainer, loader = engine_trainer(dataset, device, batch, settings)
    steps = min(steps, len(loader))
    limited = _Limited(loader, steps)
    warmup_s = timed(lambda: trainer.train_epoch(limited), device)  # compilation, CUDA graph capture
    reset_peak_memory(device)
    seconds = timed(lambda: trainer.train_epoch(limited), device)
    result = {"images_per_s": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps, "steps": steps, "warmup_s": warmup_s, "engine": trainer.engine}
    if trainer.fallback:
        result["engine_fallback"] = trainer.fallback
    return result | peak_memory(device)


def fp32_loop_rate(dataset, device: torch.device, steps: int, batch: int) -> dict:
    """pai-bench's reference loop (`train.fast=false`) on the device-resident loader."""
    model = pai_bench.build_model("resnet20", num_classes=dataset.num_classes, seed=0).to(device)
    trainer = ReferenceTrainer(model, dense_masks(model), TrainConfig())
    loader = BatchLoader(dataset.train, batch_size=batch, mean=dataset.mean, std=dataset.std, augment="crop-flip", padding=4, shuffle=True, drop_last=True, seed=0, device=device)
    steps = min(steps, len(loader))
    trainer.train_epoch(list(islice(iter(loader), min(steps, 10))))  # warm-up: cuDNN autotuned
    seconds = timed(lambda: trainer.train_epoch(islice(iter(loader), steps)), device)
    trainer.close()
    return {"images_per_s": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps, "steps": steps}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """The allocator's peaks since the last reset, in GB; nothing off a GPU."""
    if device.type != "cuda":
        return {}
    return {"peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30, "peak_reserved_gb": torch.cuda.max_memory_reserved(device) / 2**30}


class _Limited:
    """The first `steps` batches of a loader's epoch, with the loader's `prepare`."""

    def __init__(self, loader: BatchLoader, steps: int) -> None:
        self.loader, self.steps, self.prepare = loader, steps, loader.prepare

    def raw(self):
        for index, batch in enumerate(self.loader.raw()):
            if index == self.steps:
                return
            yield batch


def timed(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _packed_worker(data: str, root: str | None, device_name: str, steps: int, batch: int, settings: dict, barrier, queue) -> None:
    device = torch.device(device_name)
    dataset = load_dataset(data, root)
    trainer, loader = engine_trainer(dataset, device, batch, EngineSettings(**settings))
    steps = min(steps, len(loader))
    limited = _Limited(loader, steps)
    warmup_s = timed(lambda: trainer.train_epoch(limited), device)
    reset_peak_memory(device)
    barrier.wait()  # every trial compiled and warm: measure only while all of them run
    started = time.perf_counter()
    seconds = timed(lambda: trainer.train_epoch(limited), device)
    result = {"images_per_s": steps * batch / seconds, "started": started, "ended": started + seconds, "steps": steps, "warmup_s": warmup_s, "engine": trainer.engine}
    queue.put(result | peak_memory(device))


def packed_rate(data: str, root: str | None, device: torch.device, steps: int, batch: int, settings: EngineSettings, count: int) -> dict:
    context = mp.get_context("spawn")
    barrier, queue = context.Barrier(count), context.Queue()
    workers = [context.Process(target=_packed_worker, args=(data, root, str(device), steps, batch, asdict(settings), barrier, queue)) for _ in range(count)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=3600) for _ in workers]
    for worker in workers:
        worker.join()
    span = max(r["ended"] for r in results) - min(r["started"] for r in results)
    images = sum(r["steps"] * batch for r in results)
    result = {
        "trials": count,
        "aggregate_images_per_s": images / span,
        "per_trial_images_per_s": [r["images_per_s"] for r in results],
        "warmup_s": [r["warmup_s"] for r in results],
        "engines": sorted({r["engine"] for r in results}),
    }
    for key in ("peak_memory_gb", "peak_reserved_gb"):
        if key in results[0]:
            result[f"per_trial_{key}"] = [r[key] for r in results]
    return result


def stacked_rate(dataset, device: torch.device, steps: int, batch: int, settings: EngineSettings, count: int) -> dict:
    models = [pai_bench.build_model("resnet20", num_classes=dataset.num_classes, seed=seed) for seed in range(count)]
    masks = [dense_masks(model) for model in models]
    trainer = StackedTrainer(models, masks, TrainConfig(), device, settings)
    loaders = [
        _Limited(BatchLoader(dataset.train, batch_size=batch, mean=dataset.mean, std=dataset.std, augment="crop-flip", padding=4, shuffle=True, drop_last=True, seed=seed, device=device), steps)
        for seed in range(count)
    ]
    steps = min(steps, min(len(limited.loader) for limited in loaders))
    warmup_s = timed(lambda: trainer.train_epoch(loaders), device)  # compilation, CUDA graph capture
    reset_peak_memory(device)
    seconds = timed(lambda: trainer.train_epoch(loaders), device)
    result = {"trials": count, "aggregate_images_per_s": count * steps * batch / seconds, "ms_per_step": 1000 * seconds / steps, "warmup_s": warmup_s}
    memory = peak_memory(device)
    result |= memory | {f"per_trial_{key}": value / count for key, value in memory.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="cifar10", help="a registered dataset with the CIFAR-10 layout")
    parser.add_argument("--root", default=None, help="where the dataset's files are (default: its usual place)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per measurement")
    parser.add_argument("--batch", type=int, default=128, help="the protocol's 128; smaller only to rehearse")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the reference pipeline")
    parser.add_argument("--packed", type=int, nargs="*", default=[4, 8], help="trials side by side in (c), one measurement per count; none skips it")
    parser.add_argument("--stacked", type=int, default=8, help="trials stacked in one process in (d); 0 skips it")
    parser.add_argument("--compile-backend", default=None, help="compile the engine with this torch.compile backend, on any device (aot_eager: a CPU rehearsal)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    settings = EngineSettings.for_device(device)
    if args.compile_backend:
        settings = replace(settings, compile=True, compile_backend=args.compile_backend)
    dataset = load_dataset(args.data, args.root)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "data": args.data,
        "batch": args.batch,
        "steps": args.steps,
        "engine": asdict(settings),
    }

    def record(name: str, label: str, result: dict, rate_key: str, ratio: str | None = None) -> None:
        """Keep one measurement, print it, and write the JSON so far: a run stopped at a time
        limit keeps what it measured."""
        report[name] = result
        rate = result[rate_key]
        line = f"{label:17} {rate:10.0f} images/s"
        if ratio and "reference" in report:
            report.setdefault("ratios", {})[ratio] = rate / report["reference"]["images_per_s"]
            line += f"   {ratio} = {report['ratios'][ratio]:.2f}"
        print(line, flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(report, handle, indent=2)

    record("reference", "(a) reference", reference_rate(dataset, device, args.steps, args.batch, args.workers), "images_per_s")
    record("single", "(b) pai-bench", engine_rate(dataset, device, args.steps, args.batch, settings), "images_per_s", "b/a")
    if "peak_reserved_gb" in report["single"]:
        print(f"peak GPU memory of one trial: {report['single']['peak_memory_gb']:.2f} GB allocated, {report['single']['peak_reserved_gb']:.2f} GB reserved")
    record("fp32_loop", "(e) fp32 loop", fp32_loop_rate(dataset, device, args.steps, args.batch), "images_per_s", "e/a")
    for count in args.packed:
        packed = packed_rate(args.data, args.root, device, args.steps, args.batch, settings, count)
        record(f"packed_{count}", f"(c) {count} packed", packed, "aggregate_images_per_s", f"c{count}/a")
    if args.stacked:
        stacked = stacked_rate(dataset, device, args.steps, args.batch, settings, args.stacked)
        record("stacked", f"(d) {args.stacked} stacked", stacked, "aggregate_images_per_s", f"d{args.stacked}/a")


if __name__ == "__main__":
    main()
