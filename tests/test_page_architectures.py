"""AppTest: the Architectures page on the page file itself.

Layer table, totals and depth profile for the default LeNet5; the classics side by side
(measured on the meta device: no large model is built); the worked ideas, including the
residual block's maps for the sidebar image; controls that change the output.
"""

from __future__ import annotations

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnviz import models

from .pagetest import large_builds, ok, open_page, page_path

PAGE = page_path("architectures")


def _table(at: AppTest, column: str):
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _caption(at: AppTest, text: str) -> str:
    found = [c.value for c in at.caption if text in c.value]
    assert found, f"no caption with {text!r}"
    return found[0]


@pytest.fixture()
def at() -> AppTest:
    return open_page(PAGE, timeout=120, clean=True)


def test_default_render_lenet5_table_totals_and_classics_without_building_them():
    before = large_builds()
    at = open_page(PAGE, timeout=120, clean=True)
    assert large_builds() == before, "a large model was built before anyone asked for it"

    layers = _table(at, "flops")
    assert list(layers["name"]) == ["conv_unit.0", "conv_unit.1", "conv_unit.2", "conv_unit.3", "fc_unit.0",
                                    "fc_unit.1", "fc_unit.2"]
    assert list(layers["output_shape"]) == ["16 x 28 x 28", "16 x 14 x 14", "32 x 10 x 10", "32 x 5 x 5", "32", "32",
                                            "10"]
    assert layers["params"].sum() == 40_010
    # by hand: a conv costs 2*k*k*C_in per output value (multiply-add = 2 FLOPs), a linear 2*in per output
    conv1 = 2 * 5 * 5 * 3 * 16 * 28 * 28
    conv2 = 2 * 5 * 5 * 16 * 32 * 10 * 10
    fc = 2 * 800 * 32 + 2 * 32 * 10
    assert list(layers["flops"]) == [conv1, 0, conv2, 0, 2 * 800 * 32, 0, 2 * 32 * 10]
    assert (layers["macs"] * 2 == layers["flops"]).all()
    assert _metric(at, "Parameters") == "40,010"
    assert _metric(at, "FLOPs") == f"{(conv1 + conv2 + fc) / 1e6:.2f} M"
    assert any("multiply-add as **2 FLOPs**" in c.value for c in at.caption)
    assert len([c for c in at.get("plotly_chart")]) == 2  # depth profile, classics scatter

    by = at.table[0].value  # a static table (the idea column wraps), numbers as text
    assert list(by.index) == ["lenet5", "alexnet", "vgg16", "googlenet", "resnet18", "resnet50"]
    assert by.loc["vgg16", "parameters"] == "138,357,544" and by.loc["resnet18", "parameters"] == "11,689,512"
    assert by.loc["lenet5", "parameters"] == "40,010" and by.loc["resnet50", "parameters"] == "25,557,032"
    assert list(by["year"]) == ["1998", "2012", "2014", "2014", "2015", "2015"]
    assert [int(d) for d in by["depth"]] == [4, 8, 16, 22, 18, 50]
    gflops = by["GFLOPs"].astype(float)
    assert 30 < gflops["vgg16"] < 32 and 3.5 < gflops["resnet18"] < 3.8  # 15.5 / 1.8 GMACs published
    ideas = by["the idea it introduced"]
    assert "Inception" in ideas["googlenet"] and "Shortcut" in ideas["resnet18"]
    assert "Dropout" in ideas["alexnet"] and "3x3" in ideas["vgg16"]


def test_model_and_input_size_change_the_table(at):
    flops = _metric(at, "FLOPs")
    at.selectbox(key="arch_model").set_value("resnet_small").run()
    ok(at)
    table = _table(at, "flops")
    assert table["params"].sum() == sum(p.numel() for p in models.create("resnet_small").parameters())
    assert _metric(at, "FLOPs") != flops
    ident = table[table["name"] == "layers.0.0.extra"].iloc[0]  # identity shortcut: an empty Sequential
    assert ident["type"] == "Sequential" and ident["params"] == 0 and ident["flops"] == 0
    assert "layers.1.0.extra.0" in set(table["name"])     # 1x1 conv shortcut where the shape changes
    small = _metric(at, "FLOPs")
    at.number_input(key="arch_size_resnet_small").set_value(64).run()
    ok(at)
    assert _metric(at, "FLOPs") != small
    assert _table(at, "flops")["output_shape"].iloc[0] == "16 x 64 x 64"
    assert "3x64x64" in _caption(at, "Every leaf layer")


def test_choosing_a_large_model_builds_only_that_one(at):
    before = large_builds()
    at.selectbox(key="arch_model").set_value("resnet18").run()
    ok(at)
    after = large_builds()
    assert after["resnet18"] - before["resnet18"] <= 1  # built on request (or cached from an earlier request)
    assert {k: v for k, v in after.items() if k != "resnet18"} == {k: v for k, v in before.items() if k != "resnet18"}
    assert _metric(at, "Parameters") == "11,689,512"
    names = list(_table(at, "flops")["name"])
    assert "layer1.0.relu (again)" in names  # torchvision reuses one ReLU per block


def test_input_too_small_says_why(at):
    at.number_input(key="arch_size_lenet5").set_value(16).run()
    assert not at.exception
    assert len(at.error) == 1
    msg = at.error[0].value
    assert "lenet5 cannot take a 3x16x16 input" in msg and "expects 3x32x32" in msg and "\n" not in msg


def test_worked_ideas_numbers(at):
    kernels = _table(at, "receptive field")
    assert list(kernels["receptive field"]) == ["5 px vs 5 px", "7 px vs 7 px"]
    c = 64
    assert f"{2 * 9 * c * c:,}" in kernels["weights"].iloc[0] and f"{25 * c * c:,}" in kernels["weights"].iloc[0]
    assert f"{3 * 9 * c * c:,}" in kernels["weights"].iloc[1] and f"{49 * c * c:,}" in kernels["weights"].iloc[1]
    at.number_input(key="arch_idea_c").set_value(8).run()
    ok(at)
    assert f"{2 * 9 * 8 * 8:,}" in _table(at, "receptive field")["weights"].iloc[0]

    one = next(m.value for m in at.markdown if "1x1 conv" in m.value)
    assert "(1, 256, 28, 28)" in one and "(1, 64, 28, 28)" in one and f"{256 * 64 + 64:,} parameters" in one
    at.number_input(key="arch_idea_cout").set_value(32).run()
    ok(at)
    assert f"{256 * 32 + 32:,} parameters" in next(m.value for m in at.markdown if "1x1 conv" in m.value)

    inc = _table(at, "what it does")
    assert list(inc["output"]) == ["64 x 28 x 28", "128 x 28 x 28", "32 x 28 x 28", "32 x 28 x 28", "256 x 28 x 28"]


def test_residual_maps_follow_the_sidebar_image_and_seed():
    def render(img: Image.Image | None, label: str) -> AppTest:
        state = {"cnnviz_image": img, "cnnviz_image_label": label} if img is not None else None
        return open_page(PAGE, state=state, clean=True)

    a = render(None, "")
    stripes = Image.new("RGB", (96, 64), (240, 240, 240))
    for x in range(0, 96, 16):
        stripes.paste((10, 10, 10), (x, 0, x + 8, 64))
    b = render(stripes, "stripes")
    imgs_a, imgs_b = at_images(a), at_images(b)
    caps = [i.captions[0] for i in imgs_b]
    assert caps[0] == "x: the block's input" and caps[1].startswith("F(x): the change (grey = 0, full scale ±")
    assert caps[2:] == ["F(x) + x", "relu(F(x) + x): the block's output"]
    assert all(u != v for u, v in zip(urls(imgs_a), urls(imgs_b)))
    assert "mean |F(x)| = " in _caption(b, "The tutorial's ResBlk")
    cap = _caption(b, "The tutorial's ResBlk")
    assert "stripes (96x64)" in cap and "174 parameters" in cap  # 2 * (3*3*3*3) + 2 BN * 2 * 3 = 162 + 12
    fx = urls(imgs_b)[1]
    b.number_input(key="arch_idea_seed").set_value(1).run()
    ok(b)
    assert urls(at_images(b))[1] != fx and "seed 1" in _caption(b, "The tutorial's ResBlk")


def at_images(at: AppTest) -> list:
    return list(at.get("image"))


def urls(images: list) -> list[str]:
    return [i.value[0] for i in images]
