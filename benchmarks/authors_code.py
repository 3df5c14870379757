"""The PX authors' code, driven side by side with pai-bench's: import their repository (its
latest checkout or its first public release), load pai-bench's weights into their models, run
their prune loop, run pai-bench's on the same batch, and compare the masks.

The library of `compare_authors.py` (the side-by-side tables) and `px_batchnorm_finding.py`
(the figures of docs/findings/px-batchnorm.md); each of the two imports this module, and
neither imports the other's command-line code through it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import importlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # the authors' PX and NTK-SAP wrap loops in tqdm

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import pai_bench
from pai_bench import pruning

#: pai-bench's model name -> the authors' module and builder.
AUTHORS_MODELS = {
    "resnet20": ("lib.models.lottery_resnet", "resnet20"),
    "vgg16-bn": ("lib.models.lottery_vgg", "vgg16_bn"),
}

#: pai-bench's model name -> the ReLU-switchable copy the 2024 release's PX builds
#: (`CONFIG.experiment_args['aux_model']`, a name imported in its lib/pruners.py).
AUTHORS_AUX_MODELS = {"resnet20": "resnet20_no_act", "vgg16-bn": "vgg16_bn_no_act"}

#: pai-bench's method name -> the authors' pruner class.
AUTHORS_PRUNERS = {
    "magnitude": "Mag",
    "snip": "SNIP",
    "grasp": "GraSP",
    "synflow": "SynFlow",
    "px": "PX",
    "random": "Rand",
}

#: Methods whose authors' loop calls `model.eval()` before pruning (train_classification.py);
#: the others score the freshly built model, which is in train mode.
AUTHORS_EVAL_MODE = {"synflow", "px"}

#: pai-bench options that reproduce what the authors' code does where pai-bench's default
#: differs on purpose; `--matched` runs these too, so a gap can be traced to that choice.
MATCHED_OPTIONS = {
    "snip": {"bn_mode": "train"},  # their loop never calls eval() for SNIP
    "synflow": {"dtype": "float32"},
    "px": {"dtype": "float32"},
}

#: Rounds each method runs on both sides (pai-bench's defaults; the authors' launch script
#: uses 100 for PX). One-shot methods run one round.
DEFAULT_ROUNDS = {"magnitude": 1, "snip": 1, "grasp": 1, "random": 1, "synflow": 100, "px": 100}

EXAMPLES_PER_CLASS = 10
NUM_CLASSES = 10


# --------------------------------------------------------------------------------------------
# The authors' code


def import_authors(repo: str, release: str = "latest") -> SimpleNamespace:
    """Import the authors' `globals`, `lib.pruners`, `lib.generator` and models from `repo`.

    Their modules import each other as top-level `globals` and `lib.*`, so the checkout goes
    first on sys.path; a clear error says what is missing rather than a bare ImportError.
    Modules of another checkout imported before are dropped from sys.modules first (the
    objects already imported keep working), so two releases can run in one process.
    `release` labels the rows ("latest", "release-2024").
    """
    if not os.path.isfile(os.path.join(repo, "lib", "pruners.py")):
        raise SystemExit(f"--authors-repo {repo!r} has no lib/pruners.py: pass a checkout of iurada/px-ntk-pruning")
    for name in [name for name in sys.modules if name in ("globals", "lib") or name.startswith("lib.")]:
        del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if entry not in IMPORTED_CHECKOUTS]
    sys.path.insert(0, os.path.abspath(repo))
    IMPORTED_CHECKOUTS.add(os.path.abspath(repo))
    try:
        config = importlib.import_module("globals").CONFIG
        pruners = importlib.import_module("lib.pruners")
        generator = importlib.import_module("lib.generator")
        models = {name: importlib.import_module(module) for name, (module, _) in AUTHORS_MODELS.items()}
    except ImportError as error:
        raise SystemExit(f"cannot import the authors' code from {repo}: {error} (their code needs tqdm)") from error
    return SimpleNamespace(config=config, pruners=pruners, generator=generator, models=models, repo=repo, release=release)


#: Checkouts put on sys.path by `import_authors`.
IMPORTED_CHECKOUTS: set[str] = set()

#: The repository's first public release (April 2024), whose PX `variant=release-2024` follows.
RELEASE_2024 = "82ce2bf"


def release_2024_checkout(repo: str, given: str | None) -> str:
    """A checkout of the 2024 release: `given`, or extracted from `repo`'s git history with
    `git archive` into a temporary folder (their code is never copied into pai-bench)."""
    if given:
        return given
    target = os.path.join(tempfile.mkdtemp(prefix="px-release-2024-"), "px-ntk-pruning")
    os.makedirs(target)
    try:
        archive = subprocess.run(["git", "-C", repo, "archive", RELEASE_2024], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"cannot extract commit {RELEASE_2024} from {repo} ({error}): pass a git clone with its history, "
            "or a checkout of that commit with --authors-2024"
        ) from error
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


def configure_authors(
    authors: SimpleNamespace, rounds: int, density: float, model_name: str = "resnet20",
    examples_per_class: int = EXAMPLES_PER_CLASS,
) -> None:
    """Set their global CONFIG as main.py and the CIFAR-10 launch script would.

    examples_per_class is the paper's 10 (PX reads it; the launch script omits it, which
    would be a KeyError); batch_limit 1 makes SNIP and GraSP score the one pruning batch;
    batch_size 128 is the launch script's, so PX sees the 100 examples as one batch.
    """
    config = authors.config
    config.dataset = "CIFAR10"
    config.num_classes = NUM_CLASSES
    config.batch_size = 128
    config.device = "cpu"
    config.experiment_args = {
        "weight_remaining_ratio": density,
        "rounds": rounds,
        "batch_limit": 1,
        "examples_per_class": examples_per_class,
        "aux_model": AUTHORS_AUX_MODELS[model_name],
    }


def build_authors_model(authors: SimpleNamespace, model_name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """The authors' model with pai-bench's weights; built under a forked RNG so their own
    init draws do not move the global random stream."""
    module = authors.models[model_name]
    builder = getattr(module, AUTHORS_MODELS[model_name][1])
    with torch.random.fork_rng():
        model = builder(num_classes=NUM_CLASSES)
    load_into_authors(model, state)
    return model


def load_into_authors(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy pai-bench's state dict into the authors' model, checking every name and shape.

    Every pai-bench entry must exist in theirs with the same shape. Theirs may have only two
    kinds of extra entries: the `*_mask` buffers (all ones before pruning) and the weight of
    an identity shortcut (`layers.Identity2d`, ones). Anything else is a model mismatch, and
    the comparison would be meaningless, so it fails.
    """
    theirs = model.state_dict()
    missing = [key for key in state if key not in theirs]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(theirs[k].shape)}"
        for k in state
        if k in theirs and state[k].shape != theirs[k].shape
    ]
    modules = dict(model.named_modules())
    extra = []
    for key, value in theirs.items():
        if key in state:
            continue
        module_name, _, attribute = key.rpartition(".")
        identity = type(modules.get(module_name)).__name__ in ("Identity1d", "Identity2d") and attribute == "weight"
        if not (key.endswith("_mask") or identity) or not bool(torch.all(value == 1)):
            extra.append(key)
    if missing or shapes or extra:
        raise SystemExit(
            "pai-bench's model and the authors' do not match name by name:\n"
            f"  not in theirs: {missing[:8]}\n  shapes: {shapes[:8]}\n  unexplained in theirs: {extra[:8]}"
        )
    with torch.no_grad():
        for key, value in state.items():
            theirs[key].copy_(value)


def check_same_function(ours: nn.Module, theirs: nn.Module, inputs: torch.Tensor) -> float:
    """Max relative difference of the two models' eval-mode outputs: a wrong load shows here."""
    with torch.no_grad():
        a = copy.deepcopy(ours).eval()(inputs)
        b = copy.deepcopy(theirs).eval()(inputs)
    gap = float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))
    if gap > 1e-4:
        raise SystemExit(f"the authors' model computes something else after loading (relative gap {gap:.2e})")
    return gap


class PruningSet(Dataset):
    """The pruning batch as a dataset with `.targets`, which their PX needs to draw its
    class-balanced subset (`get_balanced_subset` takes the first 10 indices of each class)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets = inputs, [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        return self.inputs[index], self.targets[index]


def authors_loader(inputs: torch.Tensor, targets: torch.Tensor) -> DataLoader:
    """Their `data['train']`: one batch of the whole pruning set, in order."""
    return DataLoader(PruningSet(inputs, targets), batch_size=len(inputs), shuffle=False)


def run_authors(
    authors: SimpleNamespace,
    model_name: str,
    state: dict[str, torch.Tensor],
    method: str,
    sparsity: float,
    rounds: int,
    loader: DataLoader,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], float]:
    """Masks from the authors' pruner under their loop (train_classification.py), by name.

    A fresh model per run, since their pruners keep state in it (masks, accumulated grads,
    BatchNorm running statistics). `dtype` is theirs (float32) unless a diagnostic asks for
    float64: then the model, the data and the default dtype (the constants their code
    creates) all follow.
    """
    density = 1.0 - sparsity
    configure_authors(authors, rounds, density, model_name, len(loader.dataset) // NUM_CLASSES)
    model = build_authors_model(authors, model_name, state).to(dtype)
    loader = in_dtype(loader, dtype)
    pruner = getattr(authors.pruners, AUTHORS_PRUNERS[method])(authors.generator.masked_parameters(model))
    loss = nn.CrossEntropyLoss()
    names = {id(p): name for name, p in model.named_parameters()}
    previous = torch.get_default_dtype()
    started = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            if method in AUTHORS_EVAL_MODE:
                model.eval()
            for round_index in range(rounds):
                sparse = density ** ((round_index + 1) / rounds)
                pruner.score(model, loss, loader, "cpu")
                pruner.mask(sparse, "global")
        finally:
            torch.set_default_dtype(previous)
    seconds = time.perf_counter() - started
    masks = {names[id(p)]: mask.detach().clone().bool() for mask, p in pruner.masked_parameters}
    return masks, seconds


def in_dtype(loader: DataLoader, dtype: torch.dtype) -> DataLoader:
    """The same loader with its inputs converted to `dtype`."""
    dataset = loader.dataset
    if dataset.inputs.dtype == dtype:
        return loader
    return authors_loader(dataset.inputs.to(dtype), torch.tensor(dataset.targets))


def authors_asked(total: int, sparsity: float) -> int:
    """What their `_global_mask` aims to keep: N - int((1 - d) * N), often one more than
    pai-bench's round(d * N)."""
    return total - int((1.0 - (1.0 - sparsity)) * total)


# --------------------------------------------------------------------------------------------
# pai-bench's side and the data


def pruning_batch(source: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """100 examples, 10 per class: Gaussian inputs (fixed seed) or the quickstart images."""
    if source == "gaussian":
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(EXAMPLES_PER_CLASS * NUM_CLASSES, 3, 32, 32, generator=generator)
        return inputs, torch.arange(len(inputs)) % NUM_CLASSES
    from pai_bench.data import load_dataset
    from pai_bench.data.augment import normalize
    from pai_bench.data.splits import class_balanced_indices

    dataset = load_dataset("quickstart")
    split = dataset.train.subset(class_balanced_indices(dataset.train.labels, EXAMPLES_PER_CLASS, seed=seed))
    return normalize(split.images, dataset.mean, dataset.std), split.labels


def run_pai_bench(
    model: nn.Module, method: str, sparsity: float, batches, rounds: int, options: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], float, dict[str, Any]]:
    """`pai_bench.prune` with the method's defaults (and `options`), seed 0."""
    if method in ("synflow", "px"):
        options = {"rounds": rounds, **options}
    result = pai_bench.prune(model, method, sparsity, batches, seed=0, **options)
    return result.masks, result.seconds, result.options


def fingerprint(model: nn.Module) -> str:
    """A hash of every state-dict entry, to show the live model is untouched by pruning."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def authors_schedule():
    """While active, `pai_bench.prune` keeps the authors' count at every round.

    Theirs is N - int((1 - d_r) * N) with d_r = d ** ((r + 1) / rounds), pai-bench's
    round(d_r * N): at most one weight apart per round. A diagnostic only: iterative methods
    re-score the masked net, so one weight more or less at some round can move much of the
    final mask, and this separates that from a difference in the scores themselves.
    """
    original = pruning.schedule

    def schedule(total: int, sparsity: float, rounds: int) -> list[int]:
        density = 1.0 - sparsity
        return [total - int((1.0 - density ** ((r + 1) / rounds)) * total) for r in range(rounds)]

    pruning.schedule = schedule
    try:
        yield
    finally:
        pruning.schedule = original


# --------------------------------------------------------------------------------------------
# Comparing masks


@dataclass
class Row:
    method: str
    options: dict[str, Any]
    authors_release: str
    schedule: str
    authors_dtype: str
    sparsity: float
    rounds: int
    total: int
    asked_pai: int
    asked_authors: int
    kept_authors: int
    kept_pai: int
    agreement: float
    jaccard: float
    layer_correlation: float | None
    empty_authors: list[str]
    empty_pai: list[str]
    seconds_authors: float
    seconds_pai: float
    layers: list[dict[str, Any]] = field(default_factory=list)


def compare_masks(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Agreement over all prunable entries, Jaccard of the kept sets, per-layer kept counts."""
    if ours.keys() != theirs.keys():
        raise SystemExit(f"the two sides prune different parameters: {sorted(set(ours) ^ set(theirs))[:8]}")
    a = torch.cat([theirs[name].flatten() for name in ours])
    p = torch.cat([ours[name].flatten() for name in ours])
    union = int((a | p).sum())
    layers = [
        {"name": name, "total": ours[name].numel(), "authors": int(theirs[name].sum()), "pai": int(ours[name].sum()),
         "both": int((theirs[name] & ours[name]).sum())}
        for name in ours
    ]
    counts_a = torch.tensor([layer["authors"] for layer in layers], dtype=torch.float64)
    counts_p = torch.tensor([layer["pai"] for layer in layers], dtype=torch.float64)
    correlation = None
    if counts_a.std() > 0 and counts_p.std() > 0:
        correlation = float(torch.corrcoef(torch.stack([counts_a, counts_p]))[0, 1])
    return {
        "agreement": float((a == p).double().mean()),
        "jaccard": int((a & p).sum()) / union if union else 1.0,
        "layer_correlation": correlation,
        "kept_authors": int(a.sum()),
        "kept_pai": int(p.sum()),
        "empty_authors": [layer["name"] for layer in layers if layer["authors"] == 0],
        "empty_pai": [layer["name"] for layer in layers if layer["pai"] == 0],
        "layers": layers,
    }


def compare_one(
    authors, model_name, model, state, method, sparsity, rounds, batches, loader, options, schedule, authors_dtype,
    repeat=1,
) -> Row:
    """One method x sparsity: the authors' masks, pai-bench's, and how they compare.

    `schedule` is "pai-bench" (its own per-round counts) or "authors" (theirs, a diagnostic).
    With `repeat` > 1 both sides run that many times, alternating, and each keeps its fastest
    time (a shared machine's load only ever adds time); the masks are the first run's.
    """
    theirs, seconds_authors = run_authors(authors, model_name, state, method, sparsity, rounds, loader, authors_dtype)
    with authors_schedule() if schedule == "authors" else contextlib.nullcontext():
        ours, seconds_pai, used_options = run_pai_bench(model, method, sparsity, batches, rounds, options)
        for _ in range(repeat - 1):
            seconds_authors = min(
                seconds_authors, run_authors(authors, model_name, state, method, sparsity, rounds, loader, authors_dtype)[1]
            )
            seconds_pai = min(seconds_pai, run_pai_bench(model, method, sparsity, batches, rounds, options)[1])
    total = sum(mask.numel() for mask in ours.values())
    figures = compare_masks(ours, theirs)
    return Row(
        method=method,
        options=used_options,
        authors_release=authors.release,
        schedule=schedule,
        authors_dtype=str(authors_dtype).removeprefix("torch."),
        sparsity=sparsity,
        rounds=rounds,
        total=total,
        asked_pai=int(round((1.0 - sparsity) * total)),
        asked_authors=authors_asked(total, sparsity),
        seconds_authors=seconds_authors,
        seconds_pai=seconds_pai,
        **figures,
    )


# --------------------------------------------------------------------------------------------
# PX: are the authors' scores rounding noise?


def px_gradients_in(authors, model_name, state, loader, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """|dR/dθ²| from one round of the authors' `PX.score` on the dense model, in `dtype`.

    Their score is |p1.grad| * θ², so |p1.grad| is the score over θ² (θ is never exactly 0 at
    init). The default dtype is switched too, so the constants their code creates (the ReLU
    gate maps, `ones_like`) follow.
    """
    configure_authors(authors, 1, 1.0, model_name, len(loader.dataset) // NUM_CLASSES)
    model = build_authors_model(authors, model_name, state).to(dtype).eval()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        pruner = authors.pruners.PX(authors.generator.masked_parameters(model))
        pruner.score(model, nn.CrossEntropyLoss(), in_dtype(loader, dtype), "cpu")
    finally:
        torch.set_default_dtype(previous)
    names = {id(p): name for name, p in model.named_parameters()}
    return {
        names[id(p)]: (pruner.scores[id(p)].detach().double() / p.detach().double() ** 2)
        for _, p in pruner.masked_parameters
    }


def px_noise(authors, model_name, state, loader) -> dict[str, Any]:
    """Their PX gradients dR/dθ² in float32 and in float64, layer by layer.

    A gradient that depends on the weights is the same in both precisions up to float32's
    rounding (relative gap ~1e-6, correlation 1). If pk's output does not depend on the
    weights, the gradient is zero in exact arithmetic and what the code returns is rounding
    error: float64's is ~1e-9 of float32's (the ratio of the two unit roundoffs is 5e8), and
    the two are uncorrelated.
    """
    g32 = px_gradients_in(authors, model_name, state, loader, torch.float32)
    g64 = px_gradients_in(authors, model_name, state, loader, torch.float64)

    def compare(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
        a, b = a.flatten(), b.flatten()
        correlated = a.std() > 0 and b.std() > 0
        return {
            "norm32": float(a.norm()),
            "norm64": float(b.norm()),
            "ratio": float(a.norm() / b.norm()) if b.norm() > 0 else None,
            "zeros32": int((a == 0).sum()),
            "total": a.numel(),
            "correlation": float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if correlated else None,
        }

    layers = [{"name": name, **compare(g32[name], g64[name])} for name in g32]
    whole = compare(torch.cat([g.flatten() for g in g32.values()]), torch.cat([g.flatten() for g in g64.values()]))
    return {**whole, "layers": layers}


# --------------------------------------------------------------------------------------------
# Output


def describe_options(options: dict[str, Any]) -> str:
    shown = {k: v for k, v in options.items() if k != "rounds"}
    return ",".join(f"{k}={v}" for k, v in shown.items()) or "-"


def print_row(row: Row, show_layers: bool) -> None:
    corr = "-" if row.layer_correlation is None else f"{row.layer_correlation:.3f}"
    print(
        f"| {row.method} | {describe_options(row.options)} | {row.authors_release} | {row.schedule} | {row.authors_dtype} "
        f"| {row.sparsity:g} | {row.rounds} "
        f"| {row.asked_pai} / {row.asked_authors} | {row.kept_authors} | {row.kept_pai} "
        f"| {100 * row.agreement:.3f} | {row.jaccard:.3f} | {corr} "
        f"| {len(row.empty_authors)} | {len(row.empty_pai)} | {row.seconds_authors:.2f} / {row.seconds_pai:.2f} |",
        flush=True,
    )
    if show_layers:
        for layer in row.layers:
            print(
                f"|   | {layer['name']} | total {layer['total']} | authors {layer['authors']} "
                f"| pai {layer['pai']} | both {layer['both']} |"
            )


TABLE_HEADER = (
    "| method | pai-bench options | authors' code | schedule | authors' dtype | sparsity | rounds | asked (pai / authors) "
    "| kept authors | kept pai-bench "
    "| agree % | Jaccard | layer corr | empty authors | empty pai-bench | seconds (authors / pai) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def print_noise(noise: dict[str, Any]) -> None:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(
        "\nPX noise test: the authors' PX.score, one round on the dense model, |dR/dθ²| in float32 "
        f"and float64: norms {noise['norm32']:.3e} and {noise['norm64']:.3e} (ratio {fmt(noise['ratio'], '.2e')}), "
        f"correlation {fmt(noise['correlation'], '.3f')}, {noise['zeros32']} of {noise['total']} exactly 0 in float32"
    )
    print("| layer | float32 norm | float64 norm | ratio | float32 zeros | correlation |\n|---|---|---|---|---|---|")
    for layer in noise["layers"]:
        print(
            f"| {layer['name']} | {layer['norm32']:.3e} | {layer['norm64']:.3e} | {fmt(layer['ratio'], '.2e')} "
            f"| {layer['zeros32']}/{layer['total']} | {fmt(layer['correlation'], '.3f')} |"
        )


def machine() -> dict[str, Any]:
    return {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pai_bench": pai_bench.__version__,
    }


# --------------------------------------------------------------------------------------------
