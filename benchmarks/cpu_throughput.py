"""Training speed on a CPU, side by side in one run: the fp32 reference loop, the fast engine,
and the ways of training several trials at once (issue 24).

Each mode trains pai-bench's ResNet-20 at the protocol's batch of 128 on real data (an
ImageFolder, e.g. the CIFAR-10 JPEGs: `--train-images` of its training images, seeded, and
its whole test split evaluated after every epoch), through the same loaders the trials use
(uint8 images resident in memory, crop-flip on tensors). A mode runs in fresh processes (its
own thread count, its own peak memory): a warm-up epoch, then `--epochs` timed epochs, each
the training pass, the scheduler step and the evaluation. The figure is training images per
second of wall time (evaluation included), and each mode's ratio to the reference measured in
the same run. Modes:

    reference   `train.fast=false`: the plain fp32 loop (MaskEnforcer hooks, a sync per step)
    fast        what `train.fast=true` takes on this CPU (`EngineSettings.for_device`)
    fast-*      the engine's settings one by one: fp32/bf16, NCHW/channels_last, inductor
    xN          N processes of `fast` side by side at 1 thread each (x1: one trial, 1 thread) (as the local executor's
                `workers=N`, or Tune with resources.cpu=1, runs trials); aggregate rate
    stackedK    K trials in one process as one vmapped step (`stacked.py`; training only, it
                has no evaluation: compare its `train_images_per_s`)

Where a bf16 mode runs on a CPU without bf16 arithmetic (`cpu_has_bf16` false), oneDNN
emulates it: that figure is what the engine avoids by training in fp32 there.

    python benchmarks/cpu_throughput.py --root /tmp/cifar10-jpeg --out cpu_throughput.json
    python benchmarks/cpu_throughput.py --data quickstart --train-images 200 --epochs 1 \
        --modes reference fast x2 stacked2                                  # smoke, a few seconds
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from dataclasses import asdict, replace

import torch

import pai_bench
from pai_bench.config import TrainConfig
from pai_bench.data import BatchLoader, ImageSet, load_dataset
from pai_bench.engine import EngineSettings, FastTrainer, cpu_has_bf16
from pai_bench.machine import describe_machine
from pai_bench.masks import prunable_parameters
from pai_bench.training import ReferenceTrainer
from stacked import StackedTrainer

CPU = torch.device("cpu")
BATCH = 128
#: The engine's settings one at a time; "fast" is whichever of them the engine picks here.
VARIANTS = {
    "fast-fp32-nchw": EngineSettings(),
    "fast-fp32-cl": EngineSettings(channels_last=True),
    "fast-bf16-nchw": EngineSettings(bf16=True),
    "fast-bf16-cl": EngineSettings(bf16=True, channels_last=True),
    "fast-bf16-cl-inductor": EngineSettings(bf16=True, channels_last=True, compile=True, compile_mode="default"),
    "fast-fp32-cl-inductor": EngineSettings(channels_last=True, compile=True, compile_mode="default"),
}


def subset(images: ImageSet, count: int, seed: int = 0) -> ImageSet:
    if count >= len(images.labels):
        return images
    index = torch.randperm(len(images.labels), generator=torch.Generator().manual_seed(seed))[:count]
    return ImageSet(images.images[index], images.labels[index])


def loaders(dataset, train_images: int, seed: int) -> tuple[BatchLoader, BatchLoader]:
    train = BatchLoader(subset(dataset.train, train_images), batch_size=BATCH, mean=dataset.mean, std=dataset.std, augment="crop-flip", padding=4, shuffle=True, seed=seed)
    test = BatchLoader(dataset.test, batch_size=1000, mean=dataset.mean, std=dataset.std)
    return train, test


def default_modes() -> list[str]:
    """Every mode, less the bf16 variants on a CPU that would only emulate bf16 (ten times
    slower than fp32 there: an epoch of minutes that measures nothing the engine would run)."""
    variants = [name for name in VARIANTS if cpu_has_bf16() or "bf16" not in name]
    return ["reference", "fast", *variants, "x1", "x2", "stacked2"]


def settings_of(mode: str) -> EngineSettings | None:
    """None: the reference loop."""
    if mode == "reference":
        return None
    if mode in VARIANTS:
        return VARIANTS[mode]
    return EngineSettings.for_device(CPU)


def dense_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_parameters(model).items()}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: kilobytes


def _timed_epochs(trainer, train: BatchLoader, test: BatchLoader, epochs: int, barrier=None) -> dict:
    """A warm-up epoch, then `epochs` timed ones (train, scheduler step, evaluation)."""
    started = time.perf_counter()
    trainer.train_epoch(train)
    trainer.scheduler.step()
    trainer.evaluate(test)
    warmup_s = time.perf_counter() - started
    if barrier is not None:
        barrier.wait()  # every process warm: time only while all of them train
    train_s = eval_s = 0.0
    begin = time.perf_counter()
    for _ in range(epochs):
        mark = time.perf_counter()
        trainer.train_epoch(train)
        trainer.scheduler.step()
        train_s += time.perf_counter() - mark
        mark = time.perf_counter()
        _, accuracy = trainer.evaluate(test)
        eval_s += time.perf_counter() - mark
    end = time.perf_counter()
    return {"warmup_s": warmup_s, "train_s": train_s / epochs, "eval_s": eval_s / epochs, "begin": begin, "end": end, "test_acc": accuracy}


def _worker(mode: str, data: str, root: str | None, train_images: int, epochs: int, threads: int, seed: int, barrier, queue) -> None:
    torch.set_num_threads(threads)
    dataset = load_dataset(data, root)
    train, test = loaders(dataset, train_images, seed)
    model = pai_bench.build_model("resnet20", num_classes=dataset.num_classes, seed=seed)
    settings = settings_of(mode)
    config = TrainConfig(epochs=epochs + 1, milestones=[])
    trainer = ReferenceTrainer(model, dense_masks(model), config) if settings is None else FastTrainer(model, dense_masks(model), config, CPU, settings)
    result = _timed_epochs(trainer, train, test, epochs, barrier)
    trainer.close()
    queue.put(result | {"images": len(train.labels), "engine": trainer.engine, "precision": trainer.precision, "peak_rss_gb": peak_rss_gb()})


def _stacked_worker(count: int, data: str, root: str | None, train_images: int, epochs: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    dataset = load_dataset(data, root)
    models = [pai_bench.build_model("resnet20", num_classes=dataset.num_classes, seed=seed) for seed in range(count)]
    trainer = StackedTrainer(models, [dense_masks(m) for m in models], TrainConfig(nesterov=False), CPU, EngineSettings.for_device(CPU))
    trains = [loaders(dataset, train_images, seed)[0] for seed in range(count)]
    trainer.train_epoch(trains)  # warm-up
    begin = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch(trains)
    end = time.perf_counter()
    queue.put({"train_s": (end - begin) / epochs, "images": count * len(trains[0].labels), "peak_rss_gb": peak_rss_gb()})


def measure(mode: str, args: argparse.Namespace) -> dict:
    """One mode in fresh processes; images/s with evaluation included (training only for stacked)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    if mode.startswith("stacked"):
        count = int(mode.removeprefix("stacked"))
        worker = context.Process(target=_stacked_worker, args=(count, args.data, args.root, args.train_images, args.epochs, args.threads, queue))
        worker.start()
        result = queue.get(timeout=7200)
        worker.join()
        return {"trials": count, "threads": args.threads, "train_images_per_s": result["images"] / result["train_s"], "peak_rss_gb_per_trial": result["peak_rss_gb"] / count, **result}
    side_by_side = mode.startswith("x")
    processes = int(mode[1:]) if side_by_side else 1
    threads = 1 if side_by_side else args.threads
    barrier = context.Barrier(processes) if processes > 1 else None
    workers = [
        context.Process(target=_worker, args=("fast" if side_by_side else mode, args.data, args.root, args.train_images, args.epochs, threads, seed, barrier, queue))
        for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=7200) for _ in workers]
    for worker in workers:
        worker.join()
    span = (max(r["end"] for r in results) - min(r["begin"] for r in results)) / args.epochs
    images = sum(r["images"] for r in results)
    return {
        "trials": processes,
        "threads": threads,
        "images_per_s": images / span,
        "train_images_per_s": images / max(r["train_s"] for r in results),
        "epoch_s": span,
        "train_s": [r["train_s"] for r in results],
        "eval_s": [r["eval_s"] for r in results],
        "warmup_s": [r["warmup_s"] for r in results],
        "engine": sorted({r["engine"] for r in results}),
        "precision": sorted({r["precision"] for r in results}),
        "peak_rss_gb_per_trial": max(r["peak_rss_gb"] for r in results),
        "test_acc": [r["test_acc"] for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="imagefolder", help="a registered dataset with the CIFAR-10 layout")
    parser.add_argument("--root", default=None, help="where the dataset's files are (data.root)")
    parser.add_argument("--train-images", type=int, default=10_000, help="training images per epoch (seeded subset)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per mode, after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of a one-process mode")
    parser.add_argument("--modes", nargs="+", default=default_modes(), help=f"default here: {' '.join(default_modes())}")
    parser.add_argument("--out", default=None, help="write the figures as JSON here (after each mode)")
    args = parser.parse_args()

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": describe_machine(),
        "cpu_has_bf16": cpu_has_bf16(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data": args.data,
        "train_images": args.train_images,
        "batch": BATCH,
        "fast_settings": asdict(EngineSettings.for_device(CPU)),
        "modes": {},
    }
    load_dataset(args.data, args.root)  # decoded into the cache once, before any timing
    for mode in args.modes:
        result = measure(mode, args)
        report["modes"][mode] = result
        reference = report["modes"].get("reference")
        line = f"{mode:22} "
        if "images_per_s" in result:
            line += f"{result['images_per_s']:7.0f} images/s (epoch with eval {result['epoch_s']:6.1f} s)"
            if reference:
                result["ratio"] = result["images_per_s"] / reference["images_per_s"]
                line += f"  x{result['ratio']:.2f}"
        if reference:
            result["train_ratio"] = result["train_images_per_s"] / reference["train_images_per_s"]
        line += f"  training only {result['train_images_per_s']:6.0f}/s"
        if reference:
            line += f" x{result['train_ratio']:.2f}"
        line += f"  peak {result['peak_rss_gb_per_trial']:.2f} GB/trial"
        print(line, flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
