"""The standard suites: their protocol against DESIGN.md's table, cells, cutting them down from
the command line, and a one-epoch CPU smoke of each on small files in the real formats."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from pai_bench.cli import main
from pai_bench.config import list_suites, load_config, to_yaml
from pai_bench.errors import UserError
from tests.conftest import assert_config_error
from pai_bench.method import TrajectoryMethod
from pai_bench.plugins import list_methods, method_class
from pai_bench.trajectory import Trajectory, work_units
from pai_bench.runner import run_suite
from pai_bench.grid import expand_grid, suite_cells
from pai_bench.store import ResultStore

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from data_formats import make_cifar, make_tiny_imagenet  # noqa: E402

STANDARD = ["cifar10", "cifar10-extreme", "cifar100", "tinyimagenet", "transfer", "transfer-small"]
#: The PX paper's sparsities as it prints them: density 0.8^(2k), k = 1..9, rounded.
PAPER = [0.36, 0.5904, 0.738, 0.8322, 0.893, 0.9312, 0.956, 0.9717, 0.982]
EXTREME = [0.956, 0.9717, 0.982, 0.99, 0.995, 0.998, 0.999, 0.9995]
TRANSFER = [0.36, 0.893, 0.956, 0.982]
#: Every built-in method but the trajectory ones (imp): a trajectory costs its levels' training,
#: so the standard suites leave it out and `methods=[...,imp]` adds it.
BUILT_IN = sorted(
    m for m in list_methods() if method_class(m).__module__.startswith("pai_bench.methods.") and not issubclass(method_class(m), TrajectoryMethod)
)
#: Scratch-E/B train a narrower network from random weights: no pretrained checkpoint exists for it.
PRETRAINED_METHODS = [m for m in BUILT_IN if not m.startswith("scratch-")]
#: Rows of their own in every standard suite: SNIP in train-mode BatchNorm (as the PX and
#: Synaptic-Flow loops score it; `snip` is eval mode, as the official code), PX with pk in eval mode.
VARIANTS = {
    "snip-train": {"method": "snip", "bn_mode": "train"},
    "px-uniform": {"method": "px", "variant": "uniform"},
    "px-2024": {"method": "px", "variant": "release-2024"},
}

SGD = {"momentum": 0.9, "gamma": 0.1}
CIFAR10 = {"epochs": 160, "batch_size": 128, "lr": 0.1, "nesterov": False, "weight_decay": 1e-4, "milestones": [80, 120], **SGD}
CIFAR100 = {"epochs": 160, "batch_size": 128, "lr": 0.1, "nesterov": True, "weight_decay": 5e-4, "milestones": [60, 120], **SGD}
TINY = {"epochs": 200, "batch_size": 256, "lr": 0.2, "nesterov": False, "weight_decay": 1e-4, "milestones": [100, 150], **SGD}
PRETRAINED = {"epochs": 182, "batch_size": 256, "lr": 0.1, "nesterov": False, "weight_decay": 1e-4, "milestones": [91, 136], **SGD}

#: suite -> {cell: (model, dataset, augmentation, pixels the model sees, train protocol)}
PROTOCOL = {
    "cifar10": {None: ("resnet20", "cifar10", "crop-flip", 32, CIFAR10)},
    "cifar10-extreme": {None: ("resnet20", "cifar10", "crop-flip", 32, CIFAR10)},
    "cifar100": {None: ("vgg16-bn", "cifar100", "crop-flip", 32, CIFAR100)},
    "tinyimagenet": {None: ("resnet18", "tinyimagenet", "rrc-flip", 64, TINY)},
    "transfer": {
        "cifar10": ("torchvision-resnet50", "cifar10", "crop-flip", 224, PRETRAINED),
        "cifar100": ("torchvision-resnet50", "cifar100", "crop-flip", 224, PRETRAINED),
        "tinyimagenet": ("torchvision-resnet50", "tinyimagenet", "rrc-flip", 224, PRETRAINED),
    },
    "transfer-small": {None: ("torchvision-resnet18", "cifar10", "crop-flip", 224, {**PRETRAINED, "epochs": 1, "milestones": []})},
}
NATIVE = {"cifar10": 32, "cifar100": 32, "tinyimagenet": 64}
SETUP = {  # suite -> (methods, sparsities, seeds)
    "cifar10": (BUILT_IN + list(VARIANTS), PAPER, 5),
    "cifar10-extreme": (BUILT_IN + list(VARIANTS), EXTREME, 5),
    "cifar100": (BUILT_IN + list(VARIANTS), PAPER, 5),
    "tinyimagenet": (BUILT_IN + list(VARIANTS), PAPER, 5),
    "transfer": (PRETRAINED_METHODS + list(VARIANTS), TRANSFER, 5),
    "transfer-small": (PRETRAINED_METHODS + list(VARIANTS), TRANSFER, 1),
}


def test_standard_suites_are_listed():
    assert set(STANDARD) <= set(list_suites())


def test_paper_sparsities_are_density_0_8_to_the_2k():
    for k, sparsity in enumerate(PAPER, 1):
        assert abs((1 - sparsity) - 0.8 ** (2 * k)) < 5e-4


@pytest.mark.parametrize("suite", STANDARD)
def test_suite_follows_the_protocol_table(suite):
    config = load_config(suite)
    methods, sparsities, seeds = SETUP[suite]
    assert sorted(config.methods) == sorted(methods) and config.methods[0] == "dense"
    assert config.sparsities == sparsities and config.seeds == seeds
    assert config.variants == VARIANTS
    cells = suite_cells(config)
    assert set(cells) == set(PROTOCOL[suite])
    for name, (model, dataset, augment, pixels, train) in PROTOCOL[suite].items():
        cell = cells[name]
        assert (cell.model.name, cell.data.name, cell.data.augment) == (model, dataset, augment)
        assert (cell.data.input_size or cell.data.image_size or NATIVE[dataset]) == pixels
        assert {key: getattr(cell.train, key) for key in train} == train
        assert cell.data.prune_per_class == 10
        if model.startswith("torchvision-"):
            assert cell.model.weights == "IMAGENET1K_V1"
    if "scratch-b" in config.methods:  # capped as Liu et al. do; the record keeps the uncapped ratio
        assert config.options["scratch-b"] == {"max_budget": 2}


def test_imp_joins_a_suite_as_one_trajectory_per_seed_through_the_paper_sparsities():
    config = load_config("cifar10", ["methods=[dense,imp]"])
    units = work_units(expand_grid(config))
    trajectories = [unit for unit in units if isinstance(unit, Trajectory)]
    assert len(units) == 5 * 2 and len(trajectories) == 5
    assert [len(spec.levels) for spec in trajectories[0].members] == [2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert trajectories[0].epochs == 19 * 160  # 19 trained levels of the protocol's 160 epochs


@pytest.mark.parametrize("suite", STANDARD)
def test_suite_cuts_down_from_the_command_line(suite):
    config = load_config(suite, ["sparsities=[0.5]", "seeds=1", "train.epochs=2", "data.subset=2000"])
    cells = suite_cells(config)
    assert all(cell.train.epochs == 2 and cell.data.subset == 2000 for cell in cells.values())
    specs = expand_grid(config)
    assert len(specs) == len(cells) * len(config.methods)
    assert {(s.train.epochs, s.data.subset, s.seed) for s in specs} == {(2, 2000, 0)}


def test_full_grids_are_seed_major_with_seeds_shared_across_methods():
    specs = expand_grid(load_config("cifar10"))
    assert len(specs) == 5 * (1 + 14 * 9)  # dense once per seed; 11 methods and 3 variants
    assert [s.seed for s in specs] == sorted(s.seed for s in specs)
    assert all({s.seed for s in specs if s.row_name == m} == set(range(5)) for m in BUILT_IN + list(VARIANTS))
    transfer = expand_grid(load_config("transfer"))
    assert len(transfer) == 5 * 3 * (1 + 12 * 4) and len({s.key for s in transfer}) == len(transfer)
    assert [s.seed for s in transfer] == sorted(s.seed for s in transfer)
    first_seed = [s for s in transfer if s.seed == 0]
    assert [s.cell for s in first_seed[:: 1 + 12 * 4]] == ["cifar10", "cifar100", "tinyimagenet"]


# --- cells ---------------------------------------------------------------------------------


def test_cells_are_selected_and_overridden_from_the_command_line():
    config = load_config("transfer", ["cells=[tinyimagenet,cifar10]", "train.lr=0.05", "cells.cifar10.train.lr=0.01"])
    assert list(config.cells) == ["cifar10", "tinyimagenet"]  # the suite's order
    assert config.cells["cifar10"].train.lr == 0.01  # a cell's own override beats the global one
    assert config.cells["tinyimagenet"].train.lr == 0.05
    assert config.cells["tinyimagenet"].data.input_size == 224 and config.cells["cifar10"].data.image_size == 224
    assert list(load_config("transfer", ["cells=cifar100"]).cells) == ["cifar100"]
    # A cell's own setting in the suite beats the suite's section; the command line beats both.
    assert load_config("transfer", ["data.augment=none"]).cells["tinyimagenet"].data.augment == "none"


def test_a_cell_can_be_defined_from_the_command_line():
    config = load_config("cifar10", ["cells.narrow.model.name=resnet32", "cells.wide.train.epochs=3"])
    assert config.cells["narrow"].model.name == "resnet32" and config.cells["narrow"].data.name == "cifar10"
    assert config.cells["wide"].train.epochs == 3 and config.cells["wide"].model.name == "resnet20"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["cells=[cifar11]"], r"unknown cell 'cifar11'; valid choices: cifar10, cifar100, tinyimagenet"),
        (["cells=[]"], r"selects no cell"),
        (["cells.cifar10.train.epoch=3"], r"unknown key 'cells.cifar10.train.epoch'; valid keys of cells.cifar10.train: epochs, batch_size"),
        (["cells.cifar10.methods=[px]"], r"unknown key 'cells.cifar10.methods'; valid keys of cells.cifar10: model, data, train, prune"),
        (["cells.cifar100.model.name=resnet9000"], r"cell 'cifar100': unknown model 'resnet9000'"),
        (["cells.tinyimagenet.data.name=mnist"], r"cell 'tinyimagenet': unknown dataset 'mnist'"),
        (["cells.cifar10.train.epochs=-1"], r"cell 'cifar10': train.epochs=-1: need 0 \(prune only, no training\) or more"),
        (["model.weights=/nonexistent/resnet50.pth"], r"cell 'cifar10': weights file not found: /nonexistent/resnet50.pth"),
        (["model.weights=IMAGENET9K"], r"unknown weights 'IMAGENET9K' for torchvision-resnet50; valid choices: IMAGENET1K_V1"),
    ],
)
def test_bad_cells_are_one_line_user_errors(overrides, message):
    assert_config_error("transfer", overrides, message)


def test_cells_on_a_suite_without_cells_and_weights_on_a_model_without_any():
    with pytest.raises(UserError, match=r"this suite has no cells"):
        load_config("cifar10", ["cells=[cifar10]"])
    with pytest.raises(UserError, match=r"model 'resnet20' has no pretrained weights; model.weights works with torchvision-resnet18"):
        load_config("cifar10", ["model.weights=IMAGENET1K_V1"])


def test_cell_is_recorded_but_not_in_the_key():
    specs = expand_grid(load_config("transfer", ["methods=[magnitude]", "sparsities=[0.9]", "seeds=1"]))
    assert [s.cell for s in specs] == ["cifar10", "cifar100", "tinyimagenet"]
    assert len({s.key for s in specs}) == 3  # the cells differ in data, so in key
    assert dataclasses.replace(specs[0], cell="renamed").key == specs[0].key
    assert expand_grid(load_config("cifar10", ["seeds=1"]))[0].cell is None


def test_resolved_config_round_trips_through_its_yaml(tmp_path):
    config = load_config("transfer", ["cells=[cifar100,tinyimagenet]", "train.epochs=3", "cells.tinyimagenet.train.lr=0.02"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    again = load_config(str(path))
    assert again.suite == "transfer" and again.cells == config.cells
    assert [s.key for s in expand_grid(again)] == [s.key for s in expand_grid(config)]


# --- offline: missing data is one line and exit 2 --------------------------------------------


@pytest.mark.parametrize(
    "suite, fragment",
    [
        ("cifar100", "CIFAR-100 not found in {root}/cifar100 and could not be downloaded (download=False); download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it there"),
        ("tinyimagenet", "Tiny-ImageNet not found in {root}/tinyimagenet and could not be downloaded (download=False); download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it in {root}/tinyimagenet"),
        ("transfer", "CIFAR-10 not found in {root}/cifar10 and could not be downloaded (download=False); download cifar-10-python.tar.gz"),
    ],
)
def test_missing_dataset_offline_says_where_to_put_it(tmp_path, monkeypatch, capsys, suite, fragment):
    monkeypatch.setenv("PAI_BENCH_DATA", str(tmp_path))
    weights = tmp_path / "resnet50.pth"
    torch.save({}, weights)  # never read: the data is missing first
    args = ["run", f"suite={suite}", "executor=local", "data.download=false", f"model.weights={weights}", f"out={tmp_path / 'out'}"]
    assert main(args if suite == "transfer" else args[:4] + args[5:]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment.format(root=tmp_path) in lines[0]
    assert not (tmp_path / "out" / "trials").exists()


def test_missing_weights_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", "suite=transfer", "executor=local", f"model.weights={tmp_path / 'resnet50.pth'}", f"out={tmp_path / 'out'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"weights file not found: {tmp_path / 'resnet50.pth'}" in lines[0]


# --- smoke: every suite, one epoch on CPU, on small files in the real formats ------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """CIFAR-10, CIFAR-100 and Tiny-ImageNet side by side, as `data.root` (or PAI_BENCH_DATA's
    folders) would hold them: the official pickles and the tiny-imagenet-200 tree."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    make_cifar(root, "cifar10", train_labels=list(range(10)) * 2, test_labels=list(range(10)), rng=rng)
    # Five of CIFAR-100's classes present (its classifier still has 100 outputs).
    make_cifar(root, "cifar100", train_labels=list(range(5)) * 2, test_labels=list(range(5)), rng=rng)
    make_tiny_imagenet(root, classes=3, train_per_class=2, val_per_class=1, size=16, rng=rng)
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> dict[str, Path]:
    """State dicts saved from torchvision's ResNet-18 and -50 (random weights stand in for
    ImageNet's), with `layer1.0.conv1.weight` zeroed: magnitude pruning on the loaded weights must
    then remove that whole layer first, which random ones would not."""
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for arch in ("resnet18", "resnet50"):
        torch.manual_seed(0)
        state = getattr(torchvision.models, arch)().state_dict()
        state["layer1.0.conv1.weight"].zero_()
        paths[arch] = folder / f"{arch}.pth"
        torch.save(state, paths[arch])
    return paths


#: Enough to run each method once, quickly: one round for the iterative ones.
ONE_ROUND = ["px.rounds=1", "synflow.rounds=1", "iter-snip.rounds=1", "ntk-sap.rounds=1"]
#: Every method on the small ResNet-20; on the big models, a few that cover the paths (data-driven
#: scores, the Scratch-B cap, the pretrained weights), since one trial there costs seconds on CPU.
SMOKE_METHODS = {
    "cifar10": BUILT_IN + list(VARIANTS),
    "cifar10-extreme": ["dense", "magnitude", "scratch-b"],
    "cifar100": ["dense", "snip", "scratch-b"],
    "tinyimagenet": ["dense", "snip", "scratch-e"],
    "transfer": ["magnitude"],  # in each cell: the pretrained ResNet-50 loaded, pruned and trained
    "transfer-small": ["dense", "magnitude"],
}


def smoke_overrides(suite: str, data_root: Path, pretrained: dict[str, Path], out: Path) -> list[str]:
    config = load_config(suite)
    overrides = [
        "executor=local", f"out={out}", f"data.root={data_root}", "data.download=false",
        f"methods=[{','.join(SMOKE_METHODS[suite])}]", f"sparsities=[{config.sparsities[-1]}]", "seeds=1", "train.epochs=1", "train.batch_size=8",
        "train.eval_batch_size=64", "train.device=cpu", "data.prune_per_class=1", *ONE_ROUND,
    ]  # fmt: skip
    if suite.startswith("transfer"):
        arch = "resnet50" if suite == "transfer" else "resnet18"
        # 32 px instead of 224: the wiring is the same, the arithmetic 50x less.
        overrides += [f"model.weights={pretrained[arch]}", "data.image_size=32", "data.input_size=32", "data.subset=null"]
    return overrides


@pytest.mark.parametrize("suite", STANDARD)
def test_suite_runs_end_to_end(suite, data_root, pretrained, tmp_path):
    config = load_config(suite, smoke_overrides(suite, data_root, pretrained, tmp_path / "run"))
    summary = run_suite(config, progress=False)
    records = ResultStore(summary.out).records()
    assert summary.trials == len(records) == len(suite_cells(config)) * len(config.methods)
    failed = {(r["cell"], r["method"]): r.get("error") for r in records if r["status"] != "done"}
    assert not failed
    assert {r["cell"] for r in records} == set(suite_cells(config))
    assert sorted(r["row"] for r in records) == sorted(config.methods * len(suite_cells(config)))  # each row ran, named
    for record in records:
        assert record["config"]["cell"] == record["cell"] and len(record["epochs"]) == record["train_budget"]["epochs"]
        if record["method"] != "dense" and not record["method"].startswith("scratch-"):
            assert record["masks"]["kept"] == round((1 - record["sparsity"]) * record["masks"]["total"])
    if suite.startswith("transfer"):
        # The mask was computed on the loaded weights: their zeroed layer goes first.
        magnitude = [r for r in records if r["method"] == "magnitude"]
        for record in magnitude:
            layers = {layer["name"]: layer for layer in record["masks"]["layers"]}
            assert layers["layer1.0.conv1.weight"]["kept"] == 0
        assert {r["dataset"] for r in records} == {cell.data.name for cell in suite_cells(config).values()}
    scratch_b = [r for r in records if r["method"] == "scratch-b"]
    for record in scratch_b:  # capped at 2, the uncapped ratio kept
        assert record["train_budget"]["ratio"] == 2 and record["extras"]["uncapped_budget"] > 2
    summary_text = summary.summary_path.read_text()
    if config.cells:
        assert all(f"## {name}" in summary_text for name in config.cells)


#: The mask methods (every built-in but the architecture ones, which choose no mask) and dense.
INIT_METHODS = sorted([m for m in BUILT_IN if not m.startswith("scratch-")] + list(VARIANTS))
INIT_SPARSITIES = PAPER + [0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999]


def test_init_cifar10_is_prune_only_over_three_models_with_ntk_on_resnet20():
    config = load_config("init-cifar10", ["data.root=/data/cifar10-jpeg"])
    assert sorted(config.methods) == INIT_METHODS and config.sparsities == INIT_SPARSITIES and config.seeds == 3
    assert config.variants == VARIANTS  # every mask method and variant: the masks differ most before training
    cells = suite_cells(config)
    assert {name: cell.model.name for name, cell in cells.items()} == {"resnet20": "resnet20", "resnet56": "resnet56", "vgg16-bn": "vgg16-bn"}
    assert all(cell.train.epochs == 0 and cell.data.prune_per_class == 10 and cell.data.name == "imagefolder" for cell in cells.values())
    specs = expand_grid(config)
    assert {s.cell for s in specs if s.diagnostics.ntk} == {"resnet20"} == {s.cell for s in specs if s.diagnostics.rounding}
    assert all(s.diagnostics.masks_at for s in specs)


def write_jpeg_folder(root: Path, classes: list[str]) -> Path:
    """An ImageFolder of 32 px JPEGs: two training images and one test image a class."""
    from data_formats import solid, write_image

    for split, count in (("train", 2), ("test", 1)):
        for label, name in enumerate(classes):
            for index in range(count):
                write_image(root / split / name / f"{index}.jpg", solid((25 * label, 100, 7 * index), size=32))
    return root


def local_jpeg_run(tmp_path: Path, root: Path, *overrides: str) -> list[str]:
    """A local run of a JPEG-folder suite into tmp_path/run, one seed, one pruning image a class."""
    return ["executor=local", f"out={tmp_path / 'run'}", f"data.root={root}", "seeds=1", "data.prune_per_class=1", *overrides]


def test_init_cifar10_runs_prune_only_and_publishes_the_init_page(tmp_path):
    root = write_jpeg_folder(tmp_path / "jpeg", [f"class{label}" for label in range(10)])
    overrides = local_jpeg_run(tmp_path, root, "cells=[resnet20]", "methods=[dense,magnitude,snip]", "sparsities=[0.99,0.9999]", "diagnostics.ntk_examples=2")
    summary = run_suite(load_config("init-cifar10", overrides), progress=False)
    records = ResultStore(summary.out).records()
    assert len(records) == 5 and all(r["status"] == "done" and "test_acc" not in r for r in records)
    masked = [r for r in records if r["method"] != "dense"]
    assert all("ntk_trace_ratio" in r["diagnostics"] for r in masked)
    # masks kept and rounding measured at the masks_at sparsities only
    assert {r["sparsity"] for r in masked if "mask" in r} == {0.99} == {r["sparsity"] for r in masked if "rounding_jaccard_order" in r["diagnostics"]}
    page = summary.leaderboard_path.read_text()
    assert "## Collapse point" in page and "## How alike the masks are" in page and "Test accuracy" not in page


def test_cifar10_cpu_is_the_cifar10_protocol_scaled_to_eight_epochs_on_the_jpegs():
    from pai_bench.training import scale_schedule

    config = load_config("cifar10-cpu", ["data.root=/data/cifar10-jpeg"])
    paper = load_config("cifar10")
    assert config.train == scale_schedule(paper.train, 8 / paper.train.epochs)  # milestones 80, 120 -> 4, 6
    assert (config.train.epochs, config.train.milestones) == (8, [4, 6])
    assert config.data.name == "cifar10-jpeg" and config.data.augment == paper.data.augment and config.data.padding == paper.data.padding
    assert config.sparsities == [0.9, 0.9684, 0.99] and config.seeds == 3
    expected_rows = {"dense", "random", "magnitude", "snip", "iter-snip", "grasp", "synflow", "phew", "ntk-sap", "px", "px-uniform", "px-2024", "scratch-e", "scratch-b"}
    assert set(config.methods) == expected_rows
    assert config.resources.cpu == 1 and config.resources.gpu == 0
    # cut to one seed, never a whole method: every row still runs at every sparsity
    specs = expand_grid(config)
    assert {s.seed for s in specs} == {0} and {s.row for s in specs} == expected_rows
    assert len(specs) == 1 + 13 * 3 and len(expand_grid(load_config("cifar10-cpu", ["cuts=[]"]))) == 3 * (1 + 13 * 3)


def test_cifar10_cpu_runs_on_a_cifar10_jpeg_folder_with_the_cpu_engine(tmp_path):
    from pai_bench.data.folders import CIFAR10_CLASSES

    root = write_jpeg_folder(tmp_path / "jpeg", CIFAR10_CLASSES)
    # scratch-e at 99 % has 1- and 2-channel convolutions: the channels_last guard must keep it NCHW
    overrides = local_jpeg_run(tmp_path, root, "methods=[dense,snip,scratch-e]", "sparsities=[0.99]", "train.epochs=1", "train.milestones=[]", "train.batch_size=8")
    summary = run_suite(load_config("cifar10-cpu", overrides), progress=False)
    records = ResultStore(summary.out).records()
    assert len(records) == 3 and all(r["status"] == "done" for r in records), [r.get("error") for r in records]
    assert {r["dataset"] for r in records} == {"cifar10-jpeg"} and {r["engine"] for r in records} == {"fast"}
