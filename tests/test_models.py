"""The model zoo: sizes against the literature, reference naming, seeding and weight loading."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from pai_bench.errors import UserError
from pai_bench.models import MODELS, build_model, list_models, list_width_models, load_reference_state_dict


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    [
        ("resnet20", 10, 272_474),  # 0.27 M, with 1x1-conv downsampling shortcuts
        ("resnet56", 10, 855_770),  # 0.85 M
        ("vgg16-bn", 10, 14_730_000),  # ~14.7 M
        ("resnet18", 200, 11_270_000),  # ~11.27 M, Tiny-ImageNet
    ],
)
def test_parameter_counts_match_literature(name: str, num_classes: int, expected: int) -> None:
    assert n_params(build_model(name, num_classes)) == pytest.approx(expected, rel=0.01)


def test_registered_names() -> None:
    assert list_models() == [
        "quicknet",
        "resnet110",
        "resnet18",
        "resnet20",
        "resnet32",
        "resnet34",
        "resnet44",
        "resnet56",
        "torchvision-resnet18",
        "torchvision-resnet50",
        "vgg11-bn",
        "vgg13-bn",
        "vgg16-bn",
        "vgg19-bn",
    ]


@pytest.mark.parametrize("name", MODELS.names())
def test_output_shape(name: str) -> None:
    size = 64 if name in ("resnet18", "resnet34") else 32
    model = build_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)


def test_resnet20_names_follow_reference() -> None:
    names = {name for name, _ in build_model("resnet20").named_parameters()}
    for expected in ("conv.weight", "bn.weight", "bn.bias", "fc.weight", "fc.bias"):
        assert expected in names
    assert {n for n in names if ".shortcut." in n} == {
        f"blocks.{b}.shortcut.{i}.{p}"
        for b in (3, 6)
        for i, p in [(0, "weight"), (1, "weight"), (1, "bias")]
    }
    assert {n for n in names if n.startswith("blocks.0.")} == {
        "blocks.0.conv1.weight",
        "blocks.0.bn1.weight",
        "blocks.0.bn1.bias",
        "blocks.0.conv2.weight",
        "blocks.0.bn2.weight",
        "blocks.0.bn2.bias",
    }
    assert max(int(n.split(".")[1]) for n in names if n.startswith("blocks.")) == 8


def test_vgg16_names_follow_reference() -> None:
    names = {name for name, _ in build_model("vgg16-bn").named_parameters()}
    conv_indices = {int(n.split(".")[1]) for n in names if n.startswith("layers.")}
    # The plan's max-pools sit at indices 2, 5, 9 and 13.
    assert conv_indices == set(range(17)) - {2, 5, 9, 13}
    assert {"layers.0.conv.weight", "layers.0.conv.bias", "layers.0.bn.weight"} <= names
    assert {"fc.weight", "fc.bias"} <= names
    assert build_model("vgg16-bn").fc.in_features == 512


def test_tiny_resnet18_names_follow_reference() -> None:
    names = {name for name, _ in build_model("resnet18", 200).named_parameters()}
    prefixes = {n.rsplit(".", 1)[0] for n in names}
    assert {"conv1.0", "conv1.1", "fc"} <= prefixes
    assert {
        "conv2_x.0.residual_function.0",
        "conv2_x.0.residual_function.1",
        "conv2_x.0.residual_function.3",
        "conv2_x.0.residual_function.4",
    } <= prefixes
    assert {p for p in prefixes if ".shortcut." in p} == {
        f"conv{s}_x.0.shortcut.{i}" for s in (3, 4, 5) for i in (0, 1)
    }


def test_quicknet_names() -> None:
    prefixes = {n.rsplit(".", 1)[0] for n, _ in build_model("quicknet").named_parameters()}
    assert prefixes == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "fc"}


def test_reference_init() -> None:
    model = build_model("resnet20", seed=0)
    assert torch.all(model.bn.weight == 1) and torch.all(model.bn.bias == 0)
    assert torch.all(model.fc.bias == 0)
    # kaiming_normal_ (fan_in, relu gain): std sqrt(2 / 144) for a 16->16 3x3 conv.
    std = torch.cat([b.conv1.weight.flatten() for b in model.blocks[:3]]).std().item()
    assert std == pytest.approx((2 / 144) ** 0.5, rel=0.05)


def test_seed_fixes_init_and_spares_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model("resnet20", seed=1).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    b = build_model("resnet20", seed=1).state_dict()
    c = build_model("resnet20", seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])


def test_unknown_model_names_choices() -> None:
    with pytest.raises(UserError, match="'resnet21'.*resnet20"):
        build_model("resnet21")


def test_unknown_option_names_valid_options() -> None:
    with pytest.raises(UserError, match="'widht'.*'resnet20'.*width, width_multiplier"):
        build_model("resnet20", widht=8)


def test_width_options_shrink_models() -> None:
    for name in ("resnet20", "vgg11-bn", "resnet18", "quicknet"):
        half = build_model(name, num_classes=10, width_multiplier=0.5)
        assert n_params(half) < n_params(build_model(name, num_classes=10)) / 3
    narrow = build_model("resnet20", width=8)
    assert narrow.conv.out_channels == 8 and narrow.fc.in_features == 32
    assert build_model("vgg11-bn", width_multiplier=0.5).fc.in_features == 256
    with pytest.raises(UserError, match="width_multiplier"):
        build_model("quicknet", width_multiplier=0)


@pytest.mark.parametrize(
    ("name", "widths", "first", "last"),
    [
        ("resnet20", [3, 5, 7], lambda m: m.conv.out_channels, lambda m: m.fc.in_features),
        ("vgg16-bn", list(range(1, 14)), lambda m: m.layers[0].conv.out_channels, lambda m: m.fc.in_features),
        ("resnet18", [2, 3, 4, 5], lambda m: m.conv1[0].out_channels, lambda m: m.fc.in_features),
        ("quicknet", [4, 6, 8], lambda m: m.conv1.out_channels, lambda m: m.fc.in_features),
    ],
)
def test_explicit_widths_set_every_stage(name, widths, first, last) -> None:
    model = build_model(name, num_classes=10, widths=widths)
    assert model.widths == widths
    assert (first(model), last(model)) == (widths[0], widths[-1])
    assert model.build_spec == {"name": name, "num_classes": 10, "options": {"widths": widths}}
    size = 64 if name == "resnet18" else 32
    assert model(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_widths_errors_and_families() -> None:
    with pytest.raises(UserError, match=r"widths must be 3 positive integers \(the three stage widths\), got \[16, 32\]"):
        build_model("resnet20", widths=[16, 32])
    with pytest.raises(UserError, match="widths must be 13 positive integers"):
        build_model("vgg16-bn", widths=[0] * 13)
    with pytest.raises(UserError, match="pass widths or width_multiplier, not both"):
        build_model("quicknet", widths=[4, 6, 8], width_multiplier=0.5)
    with pytest.raises(UserError, match="pass widths or width, not both"):
        build_model("resnet20", widths=[4, 6, 8], width=8)
    assert build_model("resnet20", width_multiplier=0.5).widths == [8, 16, 32]
    assert build_model("resnet56", seed=1).build_spec == {"name": "resnet56", "num_classes": 10, "options": {}}
    assert list_width_models() == [name for name in list_models() if not name.startswith("torchvision-")]


def test_torchvision_weights_from_local_file(tmp_path) -> None:
    saved = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18.pt"
    torch.save(saved, path)
    model = build_model("torchvision-resnet18", num_classes=10, weights=str(path))
    loaded = model.state_dict()
    backbone = [k for k in saved if not k.startswith("fc.")]
    assert backbone and all(torch.equal(loaded[k], saved[k]) for k in backbone)
    assert model.fc.out_features == 10 and model.fc.in_features == 512


def test_torchvision_weights_errors(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(UserError, match="nope.pt"):
        build_model("torchvision-resnet18", weights=str(missing))
    with pytest.raises(UserError, match="'IMAGENET9K'.*IMAGENET1K_V1"):
        build_model("torchvision-resnet18", weights="IMAGENET9K")
    wrong = tmp_path / "resnet18-10-classes.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), wrong)
    with pytest.raises(UserError, match="fc.weight"):
        build_model("torchvision-resnet18", weights=str(wrong))

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network\nsecond line")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError, match="model.weights=PATH") as error:
        build_model("torchvision-resnet18", weights="DEFAULT")
    assert "\n" not in str(error.value)


def test_load_reference_state_dict_applies_masks() -> None:
    source = build_model("resnet20", seed=0)
    reference = dict(source.state_dict())
    mask = torch.ones_like(reference["blocks.1.conv1.weight"])
    mask[:4] = 0
    reference["blocks.1.conv1.weight_mask"] = mask
    reference["fc.weight_mask"] = torch.ones_like(reference["fc.weight"])
    reference["blocks.0.shortcut.weight"] = torch.ones(16, 1, 1)
    reference["blocks.0.shortcut.weight_mask"] = torch.ones(16, 1, 1)

    target = build_model("resnet20", seed=1)
    load_reference_state_dict(target, reference)
    loaded = target.state_dict()
    assert torch.all(loaded["blocks.1.conv1.weight"][:4] == 0)
    assert torch.equal(loaded["blocks.1.conv1.weight"][4:], reference["blocks.1.conv1.weight"][4:])
    assert torch.equal(loaded["fc.weight"], reference["fc.weight"])


def test_load_reference_state_dict_rejects_mismatches() -> None:
    reference = dict(build_model("resnet20").state_dict())
    reference["blocks.9.conv1.weight"] = reference.pop("blocks.8.conv1.weight")
    with pytest.raises(UserError, match=r"unexpected: blocks\.9\.conv1\.weight.*missing: blocks\.8"):
        load_reference_state_dict(build_model("resnet20"), reference)

    pruned = dict(build_model("resnet20").state_dict())
    pruned["blocks.0.shortcut.weight"] = torch.ones(16, 1, 1)
    pruned["blocks.0.shortcut.weight_mask"] = torch.zeros(16, 1, 1)
    with pytest.raises(UserError, match="blocks.0.shortcut.weight"):
        load_reference_state_dict(build_model("resnet20"), pruned)
