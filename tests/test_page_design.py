"""AppTest: the Architectures page's Design mode (ui/design_editor.py in pages/architectures.py).

The LeNet5 preset's table and totals, checked by a real forward pass; an input size the tutorial's
hard-coded Linear can't take, marked with the numbers and fixed in one click; a net built from
nothing, fixed, reordered and saved where the other pages find it; import refusals; starting from a
registry model.
"""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from cnnviz.models import design as D

from .pagetest import ok, open_page, page_path

PAGE = page_path("architectures")
LENET_MSG = "Layer 6 (Linear) expects 800 inputs but receives 1,152 = 32 x 6 x 6: the input is 36x36, not 32x32."


@pytest.fixture()
def designs(tmp_path, monkeypatch):
    root = tmp_path / "designs"
    monkeypatch.setenv("CNNVIZ_DESIGNS", str(root))
    return root


def _design_table(at: AppTest):
    found = [d.value for d in at.dataframe if "status" in d.value.columns]
    assert len(found) == 1
    return found[0]


def _metric(at: AppTest, label: str) -> str:
    return [m.value for m in at.metric if m.label == label][-1]  # the Design tab's come after Layer by layer's


def _ids(at: AppTest) -> list[int]:
    return [item["id"] for item in at.session_state["des_layers"]]


def _fix(at: AppTest, label: str) -> None:
    button = next(b for b in at.button if b.key and b.key.startswith("des_fix") and b.label == label)
    button.click().run()


def test_lenet5_preset_table_totals_and_code(designs):
    at = open_page(PAGE, clean=True)
    table = _design_table(at)
    assert list(table["layer"]) == ["conv1", "pool1", "conv2", "pool2", "flatten1", "fc1", "relu1", "fc2"]
    assert list(table["output"]) == ["16 x 28 x 28", "16 x 14 x 14", "32 x 10 x 10", "32 x 5 x 5", "800", "32", "32",
                                     "10"]
    assert table["parameters"].sum() == 40_010 and set(table["status"]) == {"✔ ok"}
    values = [16 * 28 * 28, 16 * 14 * 14, 32 * 10 * 10, 32 * 5 * 5, 800, 32, 32, 10]  # float32 outputs, one image
    assert list(table["activation (bytes)"]) == [4 * v for v in values]
    assert _metric(at, "Activations per image") == f"{4 * sum(values) / 1024:.1f} KiB" == "80.3 KiB"
    assert _metric(at, "Parameters") == "40,010" and _metric(at, "Output") == "10"
    assert _metric(at, "Check") == "✔ builds"
    assert any("Checked by a real forward pass" in c.value and "40,010 parameters, 4,493,440 FLOPs: the same as the "
               "table" in c.value for c in at.caption)
    code = [c.value for c in at.code]
    assert any('"name": "lenet5"' in c and '{"type": "linear", "in_features": 800, "out_features": 32}' in c
               for c in code)
    assert any("class Lenet5(nn.Module):" in c and "nn.Linear(32 * 5 * 5, 32)" in c for c in code)


def test_a_wrong_input_size_is_marked_and_fixed_in_one_click(designs):
    at = open_page(PAGE, clean=True)
    at.number_input(key="des_in_size").set_value(36).run()
    assert not at.exception
    assert [e.value for e in at.error] == [LENET_MSG]
    table = _design_table(at)
    assert list(table["status"])[:5] == ["✔ ok"] * 5 and list(table["status"])[5] == f"✖ {LENET_MSG}"
    assert list(table["status"])[6:] == ["not checked"] * 2
    assert any(m.value == ":red[**✖ can't take 1152**]" for m in at.markdown)
    assert [b.label for b in at.button if b.key and b.key.startswith("des_fix")] == ["Set in_features to 1,152",
                                                                                     "Set the input to 32x32"]
    assert at.button(key="des_save").disabled
    assert _metric(at, "Parameters (layers 1-5)") == f"{1216 + 12832:,}" and _metric(at, "Output") == "-"
    assert _metric(at, "Check") == "✖ layer 6"
    _fix(at, "Set in_features to 1,152")
    ok(at)
    assert _metric(at, "Parameters") == f"{40_010 + 32 * 352:,}"
    assert at.session_state["des_layers"][5]["layer"]["in_features"] == 1152
    at.number_input(key="des_in_size").set_value(32).run()
    assert [e.value for e in at.error] == [
        "Layer 6 (Linear) expects 1,152 inputs but receives 800 = 32 x 5 x 5: the input is 32x32, not 36x36."]
    _fix(at, "Set the input to 36x36")
    ok(at)
    assert at.session_state["des_in_size"] == 36


def test_build_from_nothing_fix_reorder_remove_and_save(designs):
    at = open_page(PAGE, clean=True)
    at.selectbox(key="des_source").set_value("preset: empty").run()
    at.button(key="des_load").click().run()
    assert any("No layers yet" in i.value for i in at.info)
    at.text_input(key="des_name").input("my tiny net").run()
    at.selectbox(key="des_add_type").set_value("conv2d").run()
    at.button(key="des_add").click().run()
    at.text_input(key=f"des_w_{_ids(at)[0]}_out_channels").input("8").run()
    at.selectbox(key="des_add_type").set_value("relu").run()
    at.button(key="des_add").click().run()
    at.selectbox(key="des_add_type").set_value("linear").run()
    at.button(key="des_add").click().run()
    assert [e.value for e in at.error] == [
        "Layer 3 (Linear) needs a flat vector but receives a 8 x 32 x 32 map: insert a Flatten before it."]
    _fix(at, "Insert a Flatten before layer 3")
    ok(at)
    assert list(_design_table(at)["type"]) == ["Conv2d", "ReLU", "Flatten", "Linear"]
    # move the ReLU below the Flatten (same model output shape), then remove it
    relu = _ids(at)[1]
    at.button(key=f"des_down_{relu}").click().run()
    ok(at)
    assert list(_design_table(at)["type"]) == ["Conv2d", "Flatten", "ReLU", "Linear"]
    assert list(_design_table(at)["output"]) == ["8 x 32 x 32", "8192", "8192", "10"]
    at.button(key=f"des_rm_{relu}").click().run()
    ok(at)
    assert list(_design_table(at)["type"]) == ["Conv2d", "Flatten", "Linear"]
    params = 8 * 27 + 8 + 8192 * 10 + 10
    assert _metric(at, "Parameters") == f"{params:,}"
    at.button(key="des_save").click().run()
    ok(at)
    assert any("Saved my-tiny-net.json" in s.value and "design:my-tiny-net.json" in s.value for s in at.success)
    saved = json.loads((designs / "my-tiny-net.json").read_text())
    assert saved == {"name": "my tiny net", "input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "flatten"},
        {"type": "linear", "out_features": "classes"}]}
    assert "saved: my-tiny-net.json" in at.selectbox(key="des_source").options


def test_design_level_problem_and_a_typo_say_one_line(designs):
    at = open_page(PAGE, clean=True)
    fc2 = _ids(at)[7]
    at.text_input(key=f"des_w_{fc2}_out_features").input("3").run()
    assert [e.value for e in at.error] == ["The design ends with 3 values but there are 10 classes: set the last "
                                           "Linear's out_features to \"classes\"."]
    _fix(at, 'Set out_features to "classes"')
    ok(at)
    at.text_input(key=f"des_w_{_ids(at)[7]}_out_features").input("ten").run()
    assert not at.exception
    assert [e.value for e in at.error] == ['layer 8 (linear): out_features must be a whole number or "classes"; '
                                           'got "ten".']


def test_import_refusals_import_and_start_from_a_registry_model(designs):
    at = open_page(PAGE, clean=True)
    at.text_area(key="des_import_text").input('{"input": [3, 32, 32], "layers": [{"type": "conv2d", "out_channels": '
                                              '-4, "kernel_size": 3}]}').run()
    at.button(key="des_import_btn").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Couldn't import the text box: layer 1 (conv2d): out_channels must be "
                                           "between 1 and 4,096; got -4."]
    assert len(_ids(at)) == 8  # the design in the editor is untouched
    at.text_area(key="des_import_text").input(json.dumps(D.PRESETS["resnet_small"])).run()
    at.button(key="des_import_btn").click().run()
    ok(at)
    assert any(s.value == "Imported 9 layers from the text box." for s in at.success)
    assert _metric(at, "Parameters") == "78,042"
    at.number_input(key="des_classes").set_value(1000).run()
    at.selectbox(key="des_source").set_value("registry: resnet18").run()
    at.button(key="des_load").click().run()
    ok(at)
    assert _metric(at, "Parameters") == "11,689,512" and at.session_state["des_in_size"] == 224
    assert list(_design_table(at)["type"])[:4] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]


def test_the_design_survives_a_visit_to_another_page(designs):
    """Streamlit drops the widget state of a page you leave: the design and its inputs come back."""
    at = open_page(PAGE, clean=True)
    at.text_input(key="des_name").input("kept").run()
    at.number_input(key="des_in_size").set_value(36).run()
    fc1 = _ids(at)[5]
    at.number_input(key=f"des_w_{fc1}_in_features").set_value(1152).run()
    ok(at)
    # a new script run with the session's plain state only, no widget state: what a page visit leaves
    kept = {k: at.session_state[k] for k in ("des_layers", "des_next", "des_keep")}
    at = open_page(PAGE, state=kept, clean=True)
    assert at.text_input(key="des_name").value == "kept" and at.number_input(key="des_in_size").value == 36
    assert at.number_input(key=f"des_w_{fc1}_in_features").value == 1152
    assert _metric(at, "Parameters") == f"{40_010 + 32 * 352:,}"


def test_a_trained_design_on_the_runs_and_feature_maps_pages(designs, tmp_path, monkeypatch):
    """The Runs page inspects a design's run, and hands it to Feature maps, even after the file is gone."""
    from cnnviz.train import TrainConfig, fit

    monkeypatch.setenv("CNNVIZ_RUNS", str(tmp_path / "runs"))
    path = D.save({"name": "small", "input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2}, {"type": "relu"},
        {"type": "adaptiveavgpool2d", "output_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": "classes"}]})
    evs = list(fit(TrainConfig(model="design:small.json", dataset="shapes", epochs=1, batch_size=64, device="cpu",
                               limit_train=128, limit_test=40)))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    path.unlink()  # the run recorded its design: it does not need the file

    at = open_page(page_path("runs"), clean=True)
    assert any("model design:small.json on shapes" in c.value for c in at.caption)
    assert at.selectbox(key="runs_layer").value == "conv1"
    assert any(c.value.startswith("conv1 at epoch 1: 6 of 6 channels, 15x15") for c in at.caption)
    at.button(key="runs_open_fm").click().run()
    handed = at.session_state["feature_maps_checkpoint"]

    fm = open_page(page_path("feature_maps"), state={"feature_maps_checkpoint": handed}, clean=True)
    assert any(c.value.startswith("**design:small.json** with") and "epoch 1" in c.value for c in fm.caption)
    assert any("6 channels of `conv1` (Conv2d, 15x15 each)" in c.value for c in fm.caption)
    assert any(c.value.startswith("Top-5 of 10 classes") for c in fm.caption)


def test_feature_maps_rebuild_a_design_saved_again(designs):
    D.save({"name": "grow", "input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "flatten"},
        {"type": "linear", "out_features": "classes"}]})
    state = {"fm_model": "design:grow.json", "fm_source_design:grow.json": "Random weights"}
    fm = open_page(page_path("feature_maps"), state=state, clean=True)
    assert any("4 channels of `conv1` (Conv2d, 30x30 each)" in c.value for c in fm.caption)
    D.save({"name": "grow", "input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 7, "kernel_size": 5}, {"type": "flatten"},
        {"type": "linear", "out_features": "classes"}]})
    fm.run()
    ok(fm)
    assert any("7 channels of `conv1` (Conv2d, 28x28 each)" in c.value for c in fm.caption)
