"""Masks from `pai_bench.prune` against the PX authors' own pruners, on the same weights.

The PX paper's code (iurada/px-ntk-pruning, `lib/pruners.py`, built on Synaptic-Flow's) holds
Mag, SNIP, GraSP, SynFlow and PX. This script runs those classes under their own prune loop
(train_classification.py: `sparse = d ** ((r + 1) / rounds)`, `_global_mask` with
`score <= threshold`, float32, the model left in train mode except for SynFlow and PX, which
call `model.eval()` first) and `pai_bench.prune` with pai-bench's defaults, on one network
(pai-bench's, seed 0, its weights loaded into the authors' model name by name) and one
pruning batch, and reports how far the masks agree.

The authors' code is not part of pai-bench: pass a checkout with `--authors-repo`.

    OMP_NUM_THREADS=2 python benchmarks/compare_authors.py --authors-repo ../px-ntk-pruning \
        --out compare.json
    python benchmarks/compare_authors.py --authors-repo ../px-ntk-pruning --model vgg16-bn \
        --sparsities 0.982 0.99 --methods px synflow
    python benchmarks/compare_authors.py --authors-repo ../px-ntk-pruning --methods px \
        --sparsities 0.982 0.99 --px-noise      # are their PX scores rounding noise?

`--matched` adds pai-bench runs with the options that do what the authors' code does where
pai-bench chose otherwise (SNIP in train mode, SynFlow and PX in float32); `--authors-schedule`
adds runs on the authors' per-round kept counts, which differ from pai-bench's by at most one
weight per round but move iterative methods' final masks; `--authors-dtype float64` runs
their loop in double precision. Rows report the kept count asked (pai-bench's round(d N) and
the authors' N - int((1 - d) N)), what each kept, the fraction of mask entries that agree, the
Jaccard index of the kept sets, the correlation of per-layer kept counts and the empty layers;
the JSON has the per-layer counts.

`--release-2024` adds rows for the repository's first public release (commit 82ce2bf, April
2024): its PX against `px.variant=release-2024` (float64, and float32), one-shot unless
`--rounds` says otherwise, pai-bench on their per-round counts so that masks can be equal
entry for entry. Their 2024 code is extracted from the checkout's git history (`git archive`
into a temporary folder), or read from `--authors-2024 PATH`.

`--finding px-batchnorm` measures the figures of docs/findings/px-batchnorm.md instead
(`px_batchnorm_finding.py`): one command from a clone of their repository.

    python benchmarks/compare_authors.py --authors-repo ../px-ntk-pruning --methods px \
        --sparsities 0.9 0.99 --rounds 1 --release-2024
    python benchmarks/compare_authors.py --authors-repo ../px-ntk-pruning --finding px-batchnorm

Their code needs `tqdm` (its progress bars are switched off here); nothing else beyond torch.
`--methods random` compares the authors' Rand with pai-bench's `random` (scope=global) as
distributions only: their draws differ, so only the per-layer counts mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # the authors' PX and NTK-SAP wrap loops in tqdm

import torch

import pai_bench
from pai_bench.masks import prunable_parameters

from authors_code import (  # noqa: E402
    AUTHORS_MODELS,
    AUTHORS_PRUNERS,
    DEFAULT_ROUNDS,
    MATCHED_OPTIONS,
    NUM_CLASSES,
    RELEASE_2024,
    TABLE_HEADER,
    authors_loader,
    build_authors_model,
    check_same_function,
    compare_one,
    fingerprint,
    import_authors,
    machine,
    print_noise,
    print_row,
    pruning_batch,
    px_noise,
    release_2024_checkout,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-repo", required=True, help="a checkout of iurada/px-ntk-pruning")
    parser.add_argument("--model", choices=sorted(AUTHORS_MODELS), default="resnet20")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.982, 0.99, 0.999])
    parser.add_argument("--methods", nargs="+", default=["magnitude", "snip", "grasp", "synflow", "px"],
                        choices=sorted(AUTHORS_PRUNERS))
    parser.add_argument("--rounds", type=int, default=None, help="override the rounds of synflow and px (default 100)")
    parser.add_argument("--matched", action="store_true",
                        help="also run pai-bench with the options that match the authors' code (MATCHED_OPTIONS)")
    parser.add_argument("--authors-schedule", action="store_true",
                        help="also run pai-bench (with the matched options) on the authors' per-round counts")
    parser.add_argument("--authors-dtype", choices=("float32", "float64"), default="float32",
                        help="float64 runs the authors' loop in double precision (a diagnostic; theirs is float32)")
    parser.add_argument("--data", choices=("gaussian", "quickstart"), default="gaussian")
    parser.add_argument("--px-noise", action="store_true", help="also test whether their PX scores are rounding noise")
    parser.add_argument("--layers", action="store_true", help="print per-layer kept counts under each row")
    parser.add_argument("--release-2024", action="store_true",
                        help=f"also compare px.variant=release-2024 with the PX of the authors' release {RELEASE_2024} "
                        "(one-shot unless --rounds; on their per-round counts)")
    parser.add_argument("--authors-2024", default=None,
                        help=f"a checkout of commit {RELEASE_2024} (default: extracted from --authors-repo's git history)")
    parser.add_argument("--finding", choices=("px-batchnorm",), default=None,
                        help="measure the figures of docs/findings/<name>.md (ignores the other options but "
                        "--authors-repo, --authors-2024 and --out)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run both sides this many times, alternating, and report each side's fastest time")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    if args.finding == "px-batchnorm":
        import px_batchnorm_finding

        px_batchnorm_finding.main(args)
        return

    authors = import_authors(args.authors_repo)
    model = pai_bench.build_model(args.model, num_classes=NUM_CLASSES, seed=0)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    inputs, targets = pruning_batch(args.data)
    batches = [(inputs, targets)]
    loader = authors_loader(inputs, targets)
    gap = check_same_function(model, build_authors_model(authors, args.model, state), inputs)
    before = fingerprint(model)
    print(f"{args.model}: {len(prunable_parameters(model))} prunable layers, weights loaded name by name, "
          f"outputs agree to {gap:.1e}; data {args.data}, {len(inputs)} examples; {torch.get_num_threads()} threads\n")

    report: dict[str, Any] = {
        "model": args.model,
        "data": args.data,
        "authors_dtype": args.authors_dtype,
        "authors_repo": os.path.abspath(args.authors_repo),
        "machine": machine(),
        "output_gap": gap,
        "repeat": args.repeat,
        "rows": [],
    }
    if args.px_noise:
        noise = px_noise(authors, args.model, state, loader)
        report["px_noise"] = noise
        print_noise(noise)
        print()

    print(TABLE_HEADER)
    for method in args.methods:
        rounds = args.rounds if args.rounds is not None and method in ("synflow", "px") else DEFAULT_ROUNDS[method]
        matched = MATCHED_OPTIONS.get(method, {})
        variants = [({}, "pai-bench")]
        if args.matched and matched:
            variants.append((matched, "pai-bench"))
        if args.authors_schedule and rounds > 1:
            variants.append((matched, "authors"))
        for options, schedule in variants:
            for sparsity in args.sparsities:
                row = compare_one(
                    authors, args.model, model, state, method, sparsity, rounds, batches, loader, options, schedule,
                    getattr(torch, args.authors_dtype), args.repeat,
                )
                print_row(row, args.layers)
                report["rows"].append(row.__dict__)
                if args.out:  # after every row: a long run that is stopped keeps what it has
                    with open(args.out, "w") as handle:
                        json.dump(report, handle, indent=1)

    if args.release_2024:
        release = import_authors(release_2024_checkout(args.authors_repo, args.authors_2024), "release-2024")
        rounds = args.rounds or 1
        for options in ({"variant": "release-2024"}, {"variant": "release-2024", "dtype": "float32"}):
            for sparsity in args.sparsities:
                row = compare_one(
                    release, args.model, model, state, "px", sparsity, rounds, batches, loader, options, "authors",
                    getattr(torch, args.authors_dtype), args.repeat,
                )
                print_row(row, args.layers)
                report["rows"].append(row.__dict__)
                if args.out:
                    with open(args.out, "w") as handle:
                        json.dump(report, handle, indent=1)

    after = fingerprint(model)
    report["live_model_untouched"] = before == after
    print(f"\npai-bench's live model untouched by every prune: {before == after} ({before})")
    if before != after:
        raise SystemExit("pai_bench.prune changed the live model")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
