"""The figures of docs/findings/px-batchnorm.md, measured with the PX authors' own code.

    python benchmarks/compare_authors.py --authors-repo /path/to/px-ntk-pruning --finding px-batchnorm

`--authors-repo` is a git clone of iurada/px-ntk-pruning: its latest code is the checkout, its
first public release (commit 82ce2bf, April 2024) is extracted from its history (or pass a
checkout of that commit with `--authors-2024`). Both run on pai-bench's ResNet-20 and
VGG-16-BN (seed 0, weights loaded name by name) and one Gaussian pruning batch, 10 examples per
class, under their own prune loop (`authors_code.run_authors`), float32, on the CPU:

1. precision: each code's PX scores on the dense network in float32 and in float64 (their
   whole computation in that dtype): the relative gap Σ|s32 - s64| / Σ|s64|, and for the
   latest code the ratio of the norms of its gradient ∂R/∂θ² (`authors_code.px_noise`);
2. determinism of the one-shot mask: the mask with 2 threads and the examples in order
   against 1 thread, the examples reversed and the examples permuted (Jaccard index of the kept
   sets, empty layers), beside two scales: the Jaccard of two random masks of the same density,
   d / (2 - d), and the Jaccard with the magnitude mask (a noise score times θ² ranks by |θ|);
3. pai-bench against each: `px` (variant=authors) against the latest code, and
   `px.variant=release-2024` (float64, and float32) against the 2024 code on its per-round
   counts: Jaccard, whether the masks are identical, seconds;
4. iterating: the 2024 code, 10 rounds at 99 %, with 1 and 2 threads;
5. VGG-16-BN: the latest code at 99 %, 20 rounds, round by round until it keeps nothing.

About 20 minutes on 2 busy cores. It prints Markdown tables and, with `--out`, writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

import authors_code as ca
import pai_bench

ONE_SHOT_SPARSITIES = (0.9, 0.99)
ITERATED = {"sparsity": 0.99, "rounds": 10}
VGG = {"sparsity": 0.99, "rounds": 20}
ORDERS = ("in order", "reversed", "permuted")


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reordered(inputs: torch.Tensor, targets: torch.Tensor, order: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The same examples in another order (the same set: exact arithmetic would not notice)."""
    if order == "in order":
        index = torch.arange(len(inputs))
    elif order == "reversed":
        index = torch.arange(len(inputs) - 1, -1, -1)
    else:
        index = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(1))
    return inputs[index], targets[index]


def authors_scores(authors, model_name: str, state, loader, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Their PX scores, one round on the dense model, their whole computation in `dtype`."""
    ca.configure_authors(authors, 1, 1.0, model_name, len(loader.dataset) // ca.NUM_CLASSES)
    model = ca.build_authors_model(authors, model_name, state).to(dtype).eval()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        pruner = authors.pruners.PX(authors.generator.masked_parameters(model))
        pruner.score(model, nn.CrossEntropyLoss(), ca.in_dtype(loader, dtype), "cpu")
    finally:
        torch.set_default_dtype(previous)
    names = {id(p): name for name, p in model.named_parameters()}
    return {names[id(p)]: pruner.scores[id(p)].detach().double() for _, p in pruner.masked_parameters}


def precision_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Σ|a - b| / Σ|b|: ~1e-6 for scores that depend on the weights, ~1 or more for noise."""
    size = sum(float(v.abs().sum()) for v in b.values())
    return sum(float((a[k] - b[k]).abs().sum()) for k in b) / size


def authors_one_shot(authors, model_name, state, inputs, targets, sparsities) -> tuple[dict[float, dict], float]:
    """Their one-shot masks at each sparsity from one scoring: `pruner.mask(d)` after one
    `score` is exactly their loop with rounds=1 (every mask is 1 before it)."""
    loader = ca.authors_loader(inputs, targets)
    ca.configure_authors(authors, 1, 1.0 - sparsities[0], model_name, len(inputs) // ca.NUM_CLASSES)
    model = ca.build_authors_model(authors, model_name, state).eval()
    pruner = authors.pruners.PX(authors.generator.masked_parameters(model))
    names = {id(p): name for name, p in model.named_parameters()}
    started = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pruner.score(model, nn.CrossEntropyLoss(), loader, "cpu")
    seconds = time.perf_counter() - started
    out = {}
    for sparsity in sparsities:
        pruner.mask(1.0 - sparsity, "global")
        out[sparsity] = {names[id(p)]: mask.detach().clone().bool() for mask, p in pruner.masked_parameters}
    return out, seconds


def summary(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, Any]:
    figures = ca.compare_masks(ours, theirs)
    identical = all(torch.equal(ours[name], theirs[name]) for name in ours)
    return {
        "jaccard": figures["jaccard"],
        "identical": identical,
        "empty": len(figures["empty_pai"]),
        "empty_reference": len(figures["empty_authors"]),
    }


def determinism(authors, state, inputs, targets, magnitude) -> dict[str, Any]:
    """One-shot masks of `authors`' PX on ResNet-20 under 2 and 1 threads and three orders."""
    runs = {}
    for count, order in [(2, "in order"), (1, "in order"), (2, "reversed"), (2, "permuted")]:
        with threads(count):
            masks, seconds = authors_one_shot(authors, "resnet20", state, *reordered(inputs, targets, order), ONE_SHOT_SPARSITIES)
        runs[f"{count} thread{'s' if count > 1 else ''}, {order}"] = (masks, seconds)
    reference, _ = runs["2 threads, in order"]
    rows = []
    for label, (masks, seconds) in runs.items():
        for sparsity in ONE_SHOT_SPARSITIES:
            figures = summary(masks[sparsity], reference[sparsity])
            figures["jaccard_magnitude"] = ca.compare_masks(masks[sparsity], magnitude[sparsity])["jaccard"]
            rows.append({"code": authors.release, "run": label, "sparsity": sparsity, "seconds": seconds, **figures})
    return {"rows": rows, "reference": reference}


def pai_bench_against(model, inputs, targets, reference, options) -> list[dict[str, Any]]:
    """`pai_bench.prune` one-shot on the authors' kept counts, against their reference masks."""
    rows = []
    for sparsity in ONE_SHOT_SPARSITIES:
        with ca.authors_schedule():
            masks, seconds, used = ca.run_pai_bench(model, "px", sparsity, [(inputs, targets)], 1, options)
        rows.append({"options": ca.describe_options(used), "sparsity": sparsity, "seconds": seconds,
                     **summary(masks, reference[sparsity])})
    return rows


def iterated(authors, state, inputs, targets) -> dict[str, Any]:
    """The 2024 code, 10 rounds at 99 %, with 1 and 2 threads."""
    loader = ca.authors_loader(inputs, targets)
    runs = {}
    for count in (2, 1):
        with threads(count):
            runs[count] = ca.run_authors(authors, "resnet20", state, "px", ITERATED["sparsity"], ITERATED["rounds"], loader)
    figures = summary(runs[1][0], runs[2][0])
    return {**ITERATED, **figures, "seconds": {count: seconds for count, (_, seconds) in runs.items()}}


def vgg_collapse(authors) -> dict[str, Any]:
    """The latest code on VGG-16-BN, their loop round by round at 99 % (20 rounds), until
    nothing is kept: once noise has emptied the classifier, every score is exactly 0 and their
    `score <= threshold` prunes every weight."""
    model = pai_bench.build_model("vgg16-bn", num_classes=ca.NUM_CLASSES, seed=0)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    loader = ca.authors_loader(*ca.pruning_batch("gaussian"))
    noise = ca.px_noise(authors, "vgg16-bn", state, loader)
    density = 1.0 - VGG["sparsity"]
    ca.configure_authors(authors, VGG["rounds"], density, "vgg16-bn")
    theirs = ca.build_authors_model(authors, "vgg16-bn", state).eval()
    pruner = authors.pruners.PX(authors.generator.masked_parameters(theirs))
    names = {id(p): name for name, p in theirs.named_parameters()}
    history = []
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for round_index in range(VGG["rounds"]):
            pruner.score(theirs, nn.CrossEntropyLoss(), loader, "cpu")
            pruner.mask(density ** ((round_index + 1) / VGG["rounds"]), "global")
            kept = {names[id(p)]: int(mask.sum()) for mask, p in pruner.masked_parameters}
            history.append({"round": round_index + 1, "kept": sum(kept.values()), "fc": kept["fc.weight"],
                            "empty": sum(count == 0 for count in kept.values())})
            print(f"  VGG-16-BN, latest code, round {round_index + 1}: kept {history[-1]['kept']:,}, "
                  f"classifier {kept['fc.weight']}, {history[-1]['empty']} of {len(kept)} layers empty", flush=True)
            if history[-1]["kept"] == 0:
                break
    return {**VGG, "gradient_ratio": noise["ratio"], "history": history}


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(2)
    latest = ca.import_authors(args.authors_repo)
    model = pai_bench.build_model("resnet20", num_classes=ca.NUM_CLASSES, seed=0)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    inputs, targets = ca.pruning_batch("gaussian")
    loader = ca.authors_loader(inputs, targets)
    before = ca.fingerprint(model)
    magnitude = {s: pai_bench.prune(model, "magnitude", s, [(inputs, targets)]).masks for s in ONE_SHOT_SPARSITIES}
    output_gap = ca.check_same_function(model, ca.build_authors_model(latest, "resnet20", state), inputs)
    report: dict[str, Any] = {"machine": ca.machine(), "examples": len(inputs), "output_gap": output_gap}
    print(f"ResNet-20 loaded into the authors' model: outputs agree to {output_gap:.1e}\n")

    print("## ResNet-20, the authors' latest code\n", flush=True)
    noise = ca.px_noise(latest, "resnet20", state, loader)
    gap = precision_gap(authors_scores(latest, "resnet20", state, loader, torch.float32),
                        authors_scores(latest, "resnet20", state, loader, torch.float64))
    report["latest"] = {"gradient_ratio": noise["ratio"], "gradient_correlation": noise["correlation"], "score_gap": gap}
    print(f"gradient ∂R/∂θ², float32 vs float64: norms {noise['norm32']:.3e} / {noise['norm64']:.3e}, ratio "
          f"{noise['ratio']:.2e}, correlation {noise['correlation']:.3f}; scores' relative gap {gap:.2e}", flush=True)
    latest_runs = determinism(latest, state, inputs, targets, magnitude)
    report["latest"]["one_shot"] = latest_runs["rows"]
    report["latest"]["pai_bench"] = pai_bench_against(model, inputs, targets, latest_runs["reference"], {})

    release = ca.import_authors(ca.release_2024_checkout(args.authors_repo, args.authors_2024), "release-2024")
    print("\n## ResNet-20, the authors' 2024 release\n", flush=True)
    gap = precision_gap(authors_scores(release, "resnet20", state, loader, torch.float32),
                        authors_scores(release, "resnet20", state, loader, torch.float64))
    report["release_2024"] = {"score_gap": gap}
    print(f"scores' relative gap float32 vs float64: {gap:.2e}", flush=True)
    release_runs = determinism(release, state, inputs, targets, magnitude)
    report["release_2024"]["one_shot"] = release_runs["rows"]
    report["release_2024"]["pai_bench"] = [
        row for options in ({"variant": "release-2024"}, {"variant": "release-2024", "dtype": "float32"})
        for row in pai_bench_against(model, inputs, targets, release_runs["reference"], options)
    ]
    report["release_2024"]["iterated"] = iterated(release, state, inputs, targets)

    print_report(report)
    print("\n## VGG-16-BN, the authors' latest code\n", flush=True)
    report["vgg16_bn"] = vgg_collapse(ca.import_authors(args.authors_repo))
    vgg = report["vgg16_bn"]
    first = {key: next((h["round"] for h in vgg["history"] if test(h)), None)
             for key, test in (("classifier", lambda h: h["fc"] == 0), ("everything", lambda h: h["kept"] == 0))}
    print(f"gradient ∂R/∂θ² float32 / float64 norm ratio: {vgg['gradient_ratio']:.2e}; classifier empty at round "
          f"{first['classifier']}, nothing kept at round {first['everything']} (None: not within {VGG['rounds']})")
    report["live_model_untouched"] = ca.fingerprint(model) == before
    print(f"\npai-bench's live model untouched by every prune: {report['live_model_untouched']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1, default=str)


def print_report(report: dict[str, Any]) -> None:
    print("\n| code | run | sparsity | Jaccard with 2 threads, in order | identical | empty layers "
          "| Jaccard with magnitude | random masks' Jaccard | seconds |\n|---|---|---|---|---|---|---|---|---|")
    for code in ("latest", "release_2024"):
        for row in report[code]["one_shot"]:
            density = 1.0 - row["sparsity"]
            print(f"| {row['code']} | {row['run']} | {row['sparsity']:g} | {row['jaccard']:.3f} | {row['identical']} "
                  f"| {row['empty']} | {row['jaccard_magnitude']:.3f} | {density / (2 - density):.3f} | {row['seconds']:.1f} |")
    print("\n| pai-bench px | against | sparsity | Jaccard | identical | empty layers (pai-bench / authors) | seconds |"
          "\n|---|---|---|---|---|---|---|")
    for code, label in (("latest", "latest code"), ("release_2024", "2024 release")):
        for row in report[code]["pai_bench"]:
            print(f"| {row['options']} | {label} | {row['sparsity']:g} | {row['jaccard']:.3f} | {row['identical']} "
                  f"| {row['empty']} / {row['empty_reference']} | {row['seconds']:.1f} |")
    it = report["release_2024"]["iterated"]
    print(f"\n2024 release, {it['rounds']} rounds at {it['sparsity']:.0%}: 1 thread against 2: Jaccard {it['jaccard']:.3f}, "
          f"identical {it['identical']}, empty layers {it['empty']} / {it['empty_reference']}, "
          f"seconds {it['seconds'][1]:.0f} / {it['seconds'][2]:.0f}", flush=True)
