"""The plots beside a page: the per-layer density panels and where their files go."""

from __future__ import annotations

from page_records import fixed_records

from pai_bench import stats
from pai_bench.pages.plots import layer_density_panels, layer_plot_path
from pai_bench.pages.tables import _groups


def test_density_plot_leaves_out_ablations_with_their_method_s_layer_densities():
    records = fixed_records()
    for r in list(records):  # an inverted random: other per-layer densities than random's
        if r["method"] == "random" and r.get("masks", {}).get("layers"):
            records.append({**r, "ablation": "invert", "key": r["key"] + "-inv",
                            "masks": {"layers": [{**layer, "density": layer["density"] / 2} for layer in r["masks"]["layers"]]}})
    (group, cells), = _groups(stats.analyse(records)).items()
    panels = dict(layer_density_panels(cells))
    assert sorted(panels) == [0.9, 0.99]
    assert set(panels[0.99]) == {"synflow", "snip", "random", "random (inverted)"}  # not snip (shuffled)
    assert panels[0.99]["random"]["fc"] == (0.0, True) and panels[0.99]["random (inverted)"]["conv"][1] is False
    assert layer_plot_path("lb/x.md", group).as_posix() == "lb/x-layers-toy-resnet20-cifar10.png"
