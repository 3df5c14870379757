from __future__ import annotations

import pytest

from pai_bench.config import list_suites, load_config, parse_overrides, to_yaml
from pai_bench.errors import UserError
from tests.conftest import assert_config_error


def test_quickstart_suite_resolves_with_overrides():
    config = load_config("quickstart", ["methods=[random,magnitude]", "sparsities=[0.9,0.99]", "seeds=2", "train.epochs=1", "out=runs/q"])
    assert config.suite == "quickstart"
    assert config.methods == ["random", "magnitude"]
    assert config.sparsities == [0.9, 0.99]
    assert (config.seeds, config.train.epochs, config.out) == (2, 1, "runs/q")
    assert config.model.name == "quicknet"


def test_method_option_override_is_routed_and_validated():
    config = load_config("quickstart", ["random.scope=erk"])
    assert config.options == {"random": {"scope": "erk"}}
    with pytest.raises(UserError, match="unknown option random.rounds; valid options of random: scope"):
        load_config("quickstart", ["random.rounds=3"])
    with pytest.raises(UserError, match="'sideways'.*global, layer, erk"):
        load_config("quickstart", ["random.scope=sideways"])


def test_every_suite_validates():
    assert "quickstart" in list_suites()
    for suite in list_suites():
        assert load_config(suite).suite == suite


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epoch=3"], r"unknown key 'train.epoch'; valid keys of train: epochs, batch_size"),
        (["bogus=1"], r"unknown key 'bogus'; valid keys: suite, description, model"),
        (["methods=[random,nope]"], r"unknown method 'nope'; valid choices: dense, .*magnitude, .*random, scratch-b, scratch-e"),
        (["sparsities=[0.5,1.0]"], r"sparsity 1.0 is outside \[0, 1\)"),
        (["sparsities=[-0.1]"], r"sparsity -0.1 is outside \[0, 1\)"),
        (["train.epochs=many"], r"bad config value"),
        (["model.name=resnet9000"], r"unknown model 'resnet9000'; valid choices: .*resnet20"),
        (["data.name=mnist"], r"unknown dataset 'mnist'; valid choices: .*cifar10"),
        (["executor=slurm"], r"unknown executor 'slurm'; valid choices: local"),
        (["seeds=0"], r"seeds=0"),
    ],
)
def test_bad_config_is_a_one_line_user_error(overrides, message):
    assert_config_error("quickstart", overrides, message)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=-1", r"train.lr=-1.0: expected a learning rate of 0 or more"),
        ("train.lr=nan", r"train.lr=nan: expected a learning rate of 0 or more"),
        ("train.lr=inf", r"train.lr=inf: expected a learning rate of 0 or more"),
        ("train.batch_size=0", r"train.batch_size=0: expected a positive number of examples"),
        ("train.eval_batch_size=0", r"train.eval_batch_size=0: expected a positive number"),
        ("train.weight_decay=-1", r"train.weight_decay=-1.0: expected 0 or a positive weight decay"),
        ("train.momentum=1.5", r"train.momentum=1.5: expected a momentum in \[0, 1\)"),
        ("train.gamma=0", r"train.gamma=0.0: expected a positive learning-rate factor"),
        ("train.milestones=[-5]", r"an epoch cannot be negative"),
        ("data.subset=-3", r"data.subset=-3: must be a positive number"),
        ("data.input_size=0", r"data.input_size=0: must be a positive number"),
        ("data.prune_per_class=0", r"data.prune_per_class=0: the pruning split needs at least one example per class"),
        ("data.padding=-1", r"data.padding=-1: crop padding cannot be negative"),
        ("data.augment=cutmix", r"unknown data.augment 'cutmix'; valid choices: crop-flip, none, rrc-flip"),
        ("train.device=tpu", r"train.device='tpu' is not a device; valid choices: auto, cpu, cuda, cuda:N"),
        ("sparsities=0.9", r"sparsities=0.9: a list is expected, e.g. sparsities=\[0.9\]"),
        ("train.milestones=80", r"train.milestones=80: a list is expected"),
        ("methods=[magnitude,imp] train.epochs=0", r"imp trains between its pruning levels, so train.epochs=0 \(prune only\) cannot run it"),
        ("methods=[imp] imp.rewind=6", r"imp rewinds to epoch 6, not before the last epoch \(train.epochs=6\)"),
        ("methods=[dense,imp] ablations=[invert]", r"ablation 'invert' applies to none of methods=\['dense', 'imp'\]"),
    ],
)
def test_values_no_trial_could_train_with_are_rejected_before_any_trial(override, message):
    assert_config_error("quickstart", override.split(), message)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_real_devices_pass(device):
    assert load_config("quickstart", [f"train.device={device}"]).train.device == device


@pytest.mark.parametrize(
    "content, message",
    [
        (b"methods: [dense\n", r"is not valid YAML \(line 2, column 1\)"),
        (b"\xff\xfemethods: [dense]\n", r"is not UTF-8 text"),
        (b"", r"is empty; a suite sets at least its methods"),
        (b"# only a comment\n", r"is empty"),
        (b"- dense\n- snip\n", r"must hold a mapping of settings, not list"),
    ],
)
def test_a_suite_file_that_is_not_a_yaml_mapping_is_one_line(tmp_path, content, message):
    path = tmp_path / "mine.yaml"
    path.write_bytes(content)
    assert_config_error(str(path), [], message)


def test_a_suite_path_that_is_a_folder_or_missing_says_so(tmp_path):
    assert_config_error(str(tmp_path), [], r"is a folder; pass a suite YAML file or a built-in suite \(cifar10,")
    assert_config_error(str(tmp_path / "missing.yaml"), [], r"suite file .*missing.yaml does not exist")
    assert_config_error("runs/elsewhere", [], r"suite file runs/elsewhere does not exist")


def test_unknown_suite_lists_the_suites():
    with pytest.raises(UserError, match=r"unknown suite 'cifar11'; valid choices: .*quickstart"):
        load_config("cifar11")


@pytest.mark.parametrize("item", ["epochs", "=3", "train epochs=3"])
def test_malformed_override(item):
    with pytest.raises(UserError, match="malformed override"):
        parse_overrides([item])


def test_suite_from_a_yaml_path_and_show_round_trips(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {name: resnet20}\ndata: {name: cifar10}\nmethods: [magnitude]\nsparsities: [0.5]\n")
    config = load_config(str(path), ["seeds=3"])
    assert (config.suite, config.model.name, config.seeds) == ("mine", "resnet20", 3)
    text = to_yaml(config)
    assert "methods:\n- magnitude" in text and "seeds: 3" in text


@pytest.mark.parametrize("override", ["data.rrc_ratio=[1.25,0.8]", "data.rrc_scale=[0.1,1.5]", "data.rrc_scale=[0.5]", "data.rrc_ratio=[0,1]"])
def test_rrc_ranges_must_be_ordered_positive_pairs(override):
    assert_config_error("quickstart", [override], override.split("=")[0])
