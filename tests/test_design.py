"""Designs (cnnviz.models.design): the JSON schema, the analytic shape check against real forward passes,
the presets against the registry's models, `to_code`, files and `design:` model names, checkpoints that
remember their design, and a design trained, reloaded and exported end to end."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnviz import models
from cnnviz.inspect.summary import summarize
from cnnviz.models import design as D
from cnnviz.models.checkpoints import CheckpointError, Checkpoint, load_checkpoint, load_into

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def designs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "designs"
    monkeypatch.setenv("CNNVIZ_DESIGNS", str(root))
    return root


def _copy_positionally(src: nn.Module, dst: nn.Module) -> None:
    """Load src's state dict into dst by position (the names differ, the shapes must not)."""
    a, b = src.state_dict(), dst.state_dict()
    assert [tuple(v.shape) for v in a.values()] == [tuple(v.shape) for v in b.values()]
    dst.load_state_dict(dict(zip(b, a.values())))


def _same_output(a: nn.Module, b: nn.Module, shape=(4, 3, 32, 32)) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


# ---- presets vs the registry ------------------------------------------------------------------------
def test_lenet5_preset_is_the_registry_lenet5():
    torch.manual_seed(0)
    ref = models.create("lenet5")
    mine = models.from_design(D.preset("lenet5"))
    assert sum(p.numel() for p in mine.parameters()) == 40_010
    assert [n for n, _ in mine.named_children()] == ["conv1", "pool1", "conv2", "pool2", "flatten1", "fc1", "relu1",
                                                      "fc2"]
    _copy_positionally(ref, mine)
    _same_output(ref, mine)
    s = summarize(mine, (3, 32, 32))
    a = D.check(D.preset("lenet5"))
    assert (a.total_params, a.total_flops) == (s.total_params, s.total_flops) == (40_010, 4_493_440)


def test_resblk_preset_is_the_registry_resnet_small():
    torch.manual_seed(0)
    ref = models.create("resnet_small")
    with torch.no_grad():  # a train-mode pass gives the BatchNorms non-trivial running statistics
        ref.train()(torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    mine = models.from_design(D.preset("resnet_small"))
    _copy_positionally(ref, mine)
    _same_output(ref, mine)
    assert sum(p.numel() for p in mine.parameters()) == sum(p.numel() for p in ref.parameters()) == 78_042
    assert type(mine.block2).__name__ == "ResBlk" and len(mine.block2.extra) == 2 and len(mine.block1.extra) == 0


@pytest.mark.parametrize("name, classes", [("lenet5", 10), ("resnet_small", 10), ("resnet18_cifar", 10),
                                           ("alexnet", 1000), ("vgg16", 1000), ("resnet18", 1000)])
def test_registry_models_that_are_plain_stacks_become_designs(name, classes):
    d = D.from_registry(name)
    a = D.check(d, classes)
    assert a.ok, a.problem
    with torch.device("meta"):
        ref = models.create(name, classes)
        mine = models.from_design(d, classes)
    assert a.total_params == sum(p.numel() for p in ref.parameters())
    assert [tuple(v.shape) for v in ref.state_dict().values()] == [tuple(v.shape) for v in mine.state_dict().values()]


def test_registry_models_with_branches_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"googlenet is not a plain stack of layers: inception3a\.branch2"):
        D.from_registry("googlenet")
    with pytest.raises(ValueError, match="resnet50 is not a plain stack.*downsample"):
        D.from_registry("resnet50")
    with pytest.raises(ValueError, match="airbench .*AdaptiveMaxPool2d layer, which designs don't offer"):
        D.from_registry("airbench")
    assert set(D.plain_stack_models()) == {"lenet5", "resnet_small", "resnet18_cifar", "alexnet", "vgg11", "vgg16",
                                           "resnet18"}


# ---- to_code -----------------------------------------------------------------------------------------
EVERYTHING = {"name": "every layer", "input": [3, 20, 20], "layers": [
    {"type": "conv2d", "out_channels": 12, "kernel_size": 3, "padding": 2, "dilation": 2, "groups": 3, "bias": False},
    {"type": "batchnorm2d", "eps": 1e-3, "momentum": 0.2},
    {"type": "leakyrelu", "negative_slope": 0.2},
    {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"type": "resblock", "out_channels": 16, "stride": 2},
    {"type": "gelu", "approximate": "tanh"},
    {"type": "avgpool2d", "kernel_size": 2, "count_include_pad": False, "padding": 1},
    {"type": "silu"},
    {"type": "conv2d", "out_channels": "classes", "kernel_size": 1},
    {"type": "adaptiveavgpool2d", "output_size": 2},
    {"type": "flatten"},
    {"type": "dropout", "p": 0.1},
    {"type": "linear", "out_features": 24, "bias": False},
    {"type": "relu"},
    {"type": "linear", "out_features": "classes"},
]}


@pytest.mark.parametrize("spec, classes, channels", [(D.PRESETS["lenet5"], 10, None), (D.PRESETS["resnet_small"], 7, 1),
                                                     (EVERYTHING, 5, None), (EVERYTHING, 3, 6)])
def test_to_code_builds_the_same_model(spec, classes, channels):
    code = models.to_code(spec, classes, channels)
    assert "cnnviz" not in code.split('"""', 2)[2]  # plain PyTorch: no cnnviz import
    ns: dict = {}
    exec(compile(code, "<design>", "exec"), ns)  # noqa: S102 - the TEST runs the generated code
    made = ns[D.class_name(spec)]()  # the defaults are the given classes / channels
    torch.manual_seed(0)
    mine = models.from_design(spec, classes, channels)
    want = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in made.state_dict().items()} == want
    made.load_state_dict(mine.state_dict())
    c = channels or spec["input"][0]
    _same_output(mine, made, (3, c, spec["input"][1], spec["input"][2]))
    assert mine(torch.zeros(2, c, spec["input"][1], spec["input"][2])).shape == (2, classes)


def test_to_code_reads_like_the_tutorial():
    code = models.to_code(D.PRESETS["lenet5"])
    assert "self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=5)" in code
    assert "self.fc1 = nn.Linear(32 * 5 * 5, 32)" in code and "self.fc2 = nn.Linear(32, num_classes)" in code
    assert re.search(r"self\.pool2 = nn\.MaxPool2d\(kernel_size=2, stride=2\)\s+# -> 32 x 5 x 5", code)
    assert "class ResBlk" not in code and "class ResBlk(nn.Module)" in models.to_code(D.PRESETS["resnet_small"])


# ---- the schema: bad designs refused with one line ---------------------------------------------------------
def _lenet(**changes):
    d = json.loads(json.dumps(D.PRESETS["lenet5"]))
    for path, value in changes.items():
        i, key = path.split("__")
        d["layers"][int(i)][key] = value
    return d


BAD = [
    ({"input": [3, 32, 32], "layers": [{"type": "conv3d", "out_channels": 4, "kernel_size": 3}]},
     "layer 1: unknown layer type \"conv3d\" (did you mean 'conv2d'?); known: conv2d, batchnorm2d"),
    (_lenet(**{"0__out_channels": -16}), "layer 1 (conv2d): out_channels must be between 1 and 4,096; got -16."),
    (_lenet(**{"0__kernel_size": 40}), "Layer 1 (Conv2d): the 40x40 kernel spans 40 px but its input is only 32x32: "
                                       "use a smaller kernel, more padding or a larger input."),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                                     {"type": "linear", "out_features": "classes"}]},
     "Layer 2 (Linear) needs a flat vector but receives a 4 x 6 x 6 map: insert a Flatten before it."),
    ({"input": [3, 8, 8], "layers": [{"type": "relu"}] * 10_000}, "Too many layers (10,000); a design may have at most 200."),
    (_lenet(**{"2__out_channels": 1_000_000}), "layer 3 (conv2d): out_channels must be between 1 and 4,096; got 1,000,000."),
    ({"input": [3, 224, 224], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 65_536},
                                         {"type": "linear", "out_features": "classes"}]},
     "Layer 2 (Linear) brings the total to 9,865,068,544 parameters; a design may have at most 150,000,000."),
    ({"input": [3, 224, 224], "layers": [{"type": "conv2d", "out_channels": 4096, "kernel_size": 7, "padding": 3}]},
     "Layer 1 (Conv2d) brings the cost to 60,423,143,424 FLOPs per image; a design may cost at most 50,000,000,000."),
    (_lenet(**{"0__kernel_size": "5"}), 'layer 1 (conv2d): kernel_size must be a whole number; got "5".'),
    (_lenet(**{"5__bias": "yes"}), 'layer 6 (linear): bias must be true or false; got "yes".'),
    (_lenet(**{"6__inplace": True}), "layer 7 (relu): unknown key 'inplace'; allowed: none."),
    (_lenet(**{"0__out_chanels": 16}), "layer 1 (conv2d): unknown key 'out_chanels' (did you mean 'out_channels'?); "
                                       "allowed: in_channels, out_channels, kernel_size"),
    ({"input": "3x32x32", "layers": []}, 'input must be [channels, height, width], three whole numbers; got "3x32x32".'),
    ({"input": [3, 32, 32], "layers": [], "optimizer": "adam"},
     "Unknown top-level key 'optimizer'; a design has only 'name', 'input' and 'layers'."),
    ({"input": [3, 32, 32], "layers": {"type": "relu"}}, 'A design needs "layers": a list of'),
    ('{"input": [3, 32, 32], "layers": [', "Not valid JSON: Expecting value at line 1, column 35."),
    ({"input": [3, 32, 48], "layers": []}, "input must be square (height = width)"),
    ({"input": [3, 32, 32], "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "groups": 3},
                                       {"type": "flatten"}, {"type": "linear", "out_features": "classes"}]},
     "Layer 1 (Conv2d): groups = 3 must divide both its input channels (3) and out_channels (8)."),
    ({"input": [3, 8, 8], "layers": [{"type": "maxpool2d", "kernel_size": 2, "padding": 2}]},
     "Layer 1 (MaxPool2d): padding 2 is more than half the 2x2 window (PyTorch allows at most 1)."),
    ({"input": [3, 4, 4], "layers": [{"type": "avgpool2d", "kernel_size": 5}]},
     "Layer 1 (AvgPool2d): the 5x5 window does not fit its 4x4 input: use a smaller window or a larger input."),
    ({"input": [3, 8, 8], "layers": [{"type": "flatten"}, {"type": "batchnorm2d"}]},
     "Layer 2 (BatchNorm2d) needs a C x H x W map but receives a flat vector of 192 values (the Flatten at layer 1 "
     "made it one); BatchNorm2d can't follow a Flatten or a Linear."),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3}]},
     "The design ends with a 4 x 6 x 6 map; a classifier must end with a flat vector of 10 class scores"),
    (_lenet(**{"7__out_features": 3}), "The design ends with 3 values but there are 10 classes: set the last Linear's "
                                        'out_features to "classes".'),
]


@pytest.mark.parametrize("spec, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_designs_are_refused_with_one_line(spec, message):
    with pytest.raises(ValueError) as err:
        models.from_design(spec)
    text = str(err.value)
    assert message in text and "\n" not in text and "Traceback" not in text


def test_caps_are_checked_before_anything_is_built():
    big = {"input": [3, 512, 512], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 4096},
                                              {"type": "linear", "out_features": "classes"}]}
    a = D.check(big)  # analytic: 3.2 G parameters are counted, not allocated
    assert a.problem.index == 1 and "3,221,229,568 parameters" in a.problem.message
    with pytest.raises(ValueError, match="at most 150,000,000"):
        models.from_design(big)


def test_linear_expecting_the_tutorial_size_says_the_input_is_wrong_and_fixes_it():
    d = D.parse({**D.PRESETS["lenet5"], "input": [3, 36, 36]})
    a = D.check(d)
    assert not a.ok and a.problem.index == 5
    assert a.problem.message == ("Layer 6 (Linear) expects 800 inputs but receives 1,152 = 32 x 6 x 6: the input is "
                                 "36x36, not 32x32.")
    assert [r.shape_text for r in a.rows[:5]] == ["16 x 32 x 32", "16 x 16 x 16", "32 x 12 x 12", "32 x 6 x 6",
                                                  "1152"]
    set_in, set_size = a.problem.fixes
    assert set_in.label == "Set in_features to 1,152" and set_size.label == "Set the input to 32x32"
    fixed = D.check(set_in.design)
    assert fixed.ok and fixed.total_params == 40_010 + 32 * (1152 - 800)
    assert D.check(set_size.design).ok and set_size.design.hash == D.preset("lenet5").hash


def test_other_fixes_repair_the_design():
    a = D.check({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                                                 {"type": "linear", "out_features": "classes"}]})
    (fix,) = a.problem.fixes
    assert fix.label == "Insert a Flatten before layer 2" and D.check(fix.design).ok
    a = D.check({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3}]})
    assert a.problem.index is None and D.check(a.problem.fixes[0].design).ok
    a = D.check({"input": [3, 8, 8], "layers": [{"type": "flatten"}, {"type": "conv2d", "out_channels": 4,
                                                                        "kernel_size": 3}]})
    assert a.problem.fixes[0].label == "Remove the Flatten (layer 1)"
    a = D.check({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3,
                                                  "in_channels": 1}]})
    assert a.problem.message == "Layer 1 (Conv2d) expects 1 input channels but receives 3."
    assert a.problem.fixes[0].label == "Set in_channels to 3"
    a = D.check({"input": [3, 8, 8], "layers": [{"type": "maxpool2d", "kernel_size": 2, "padding": 2},
                                                 {"type": "flatten"}, {"type": "linear", "out_features": "classes"}]})
    assert D.check(a.problem.fixes[0].design).ok


def test_json_round_trip_minimal_keys_and_hash():
    d = D.preset("lenet5")
    text = d.to_json()
    assert D.parse(text) == d
    first = json.loads(text)["layers"][0]
    assert first == {"type": "conv2d", "out_channels": 16, "kernel_size": 5}  # defaults are not written
    assert json.loads(text)["layers"][1] == {"type": "maxpool2d", "kernel_size": 2, "stride": 2}
    renamed = D.parse({**D.PRESETS["lenet5"], "name": "other"})
    assert renamed.hash == d.hash  # the name is not part of the model
    explicit = D.parse(json.loads(D.preset("lenet5").to_json()) | {"layers": [
        {**layer, "stride": 1} if layer["type"] == "conv2d" else layer for layer in d.to_dict()["layers"]]})
    assert explicit.hash == d.hash  # a default written out is the same design
    assert D.parse({**D.PRESETS["lenet5"], "input": [3, 28, 28]}).hash != d.hash


def test_hashes_of_designs_saved_before_the_package_split_are_unchanged():
    """Checkpoints record `design_hash`; these values were written by the single-module design.py, so runs
    trained before the split still load into the same designs."""
    assert D.preset("lenet5").hash == "d45b8fd34b65" and D.preset("resnet_small").hash == "b607fc615ca7"
    assert D.parse(EVERYTHING).hash == "f665413b8bc2" and D.from_registry("vgg16").hash == "4926ab3221aa"


# ---- the analytic check against real forward passes -----------------------------------------------------------
def _random_design(rng: random.Random) -> dict:
    size = rng.choice([7, 12, 16, 23, 32])
    layers = []
    flat = False
    for _ in range(rng.randint(1, 9)):
        t = rng.choice(["conv2d", "batchnorm2d", "relu", "leakyrelu", "gelu", "silu", "maxpool2d", "avgpool2d",
                        "adaptiveavgpool2d", "dropout", "resblock"] if not flat else ["linear", "relu", "dropout"])
        if t == "conv2d":
            g = rng.choice([1, 1, 2])
            layers.append({"type": t, "out_channels": 2 * rng.randint(1, 6), "kernel_size": rng.randint(1, 5),
                           "stride": rng.randint(1, 3), "padding": rng.randint(0, 2), "dilation": rng.randint(1, 2),
                           "groups": g, "bias": rng.random() < 0.5})
        elif t in ("maxpool2d", "avgpool2d"):
            k = rng.randint(1, 4)
            layer = {"type": t, "kernel_size": k, "stride": rng.choice([None, 1, 2, 3]), "padding": rng.randint(0, k // 2),
                     "ceil_mode": rng.random() < 0.5}
            if t == "maxpool2d":
                layer["dilation"] = rng.randint(1, 2)
            layers.append(layer)
        elif t == "adaptiveavgpool2d":
            layers.append({"type": t, "output_size": rng.randint(1, 4)})
        elif t == "resblock":
            layers.append({"type": t, "out_channels": rng.randint(2, 8), "stride": rng.randint(1, 2)})
        elif t == "linear":
            layers.append({"type": t, "out_features": rng.randint(3, 20)})
        else:
            layers.append({"type": t})
        if rng.random() < 0.15 and not flat:
            layers.append({"type": "flatten"})
            flat = True
    layers += ([] if flat else [{"type": "flatten"}]) + [{"type": "linear", "out_features": "classes"}]
    return {"name": "random", "input": [rng.choice([1, 2, 3]), size, size], "layers": layers}


def test_shapes_params_and_flops_agree_with_pytorch_on_random_designs():
    rng = random.Random(0)
    built = refused = 0
    for _ in range(150):
        spec = _random_design(rng)
        a = D.check(spec, 6)
        if not a.ok:  # PyTorch must refuse the same layer
            refused += 1
            bad = a.problem.index
            assert bad is not None, a.problem
            ok_prefix = {**spec, "layers": spec["layers"][:bad]}
            layers = [r.call.build().eval() for r in D.check(ok_prefix, 6).rows] if bad else []
            head = D.check(spec, 6).rows[bad]
            x = torch.zeros(1, *a.input_shape)
            with torch.no_grad():
                for m in layers:
                    x = m(x)
                assert tuple(x.shape[1:]) == head.in_shape
            continue
        built += 1
        model = models.from_design(spec, 6).eval()
        shapes = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape[1:]))) for m in model.children()]
        s = summarize(model, a.input_shape)
        for h in hooks:
            h.remove()
        assert shapes == [r.out_shape for r in a.rows], spec
        assert [sum(p.numel() for p in m.parameters()) for m in model.children()] == [r.params for r in a.rows]
        assert (s.total_params, s.total_flops) == (a.total_params, a.total_flops), spec
    assert built > 100 and refused > 15  # both paths were exercised (130 and 20 with this seed)


def _forward_activation_bytes(model: nn.Module, x: torch.Tensor) -> list[int]:
    """Bytes of each child's output in a real forward pass."""
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: sizes.append(o.numel() * o.element_size()))
             for m in model.children()]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return sizes


@pytest.mark.parametrize("spec, classes, channels, batch", [(D.PRESETS["lenet5"], 10, None, 3),
                                                            (D.PRESETS["resnet_small"], 7, 1, 2),
                                                            (EVERYTHING, 5, None, 4)])
def test_activation_memory_is_the_real_forward_pass_tensor_sizes(spec, classes, channels, batch):
    a = D.check(spec, classes, channels)
    mem = D.activation_memory(a, batch)  # from the checked shapes: nothing built
    x = torch.randn(batch, *a.input_shape, generator=torch.Generator().manual_seed(0))
    real = _forward_activation_bytes(models.from_design(spec, classes, channels), x)
    assert x.dtype == torch.float32 and list(mem.per_layer) == real
    assert (mem.largest, mem.total, mem.batch_size) == (max(real), sum(real), batch)
    assert a.activations.total * batch == mem.total and [r.out_bytes for r in a.rows] == [b // batch for b in real]


def test_activation_memory_of_lenet5_and_of_a_design_too_big_to_build():
    a = D.check(D.PRESETS["lenet5"])
    # conv1 16x28x28, pool1 16x14x14, conv2 32x10x10, pool2 32x5x5, flatten 800, fc1 32, relu 32, fc2 10 values
    values = [12_544, 3_136, 3_200, 800, 800, 32, 32, 10]
    assert D.activation_memory(a, 128).per_layer == tuple(4 * 128 * v for v in values)
    assert a.activations.largest == 4 * 12_544 and a.activations.total == 4 * sum(values)
    big = D.check({"input": [3, 512, 512], "layers": [{"type": "conv2d", "out_channels": 64, "kernel_size": 3},
                                                       {"type": "flatten"}, {"type": "linear", "out_features": 4096}]})
    assert big.problem.index == 2  # over the parameter cap: counted, not allocated
    assert D.activation_memory(big, 64).per_layer == (64 * 4 * 64 * 510 * 510,) * 2 + (64 * 4 * 4096,)
    with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1"):
        D.activation_memory(a, 0)


@pytest.mark.parametrize("layer, size", [({"type": "conv2d", "out_channels": 4, "kernel_size": 9}, 8),
                                         ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "dilation": 4}, 8),
                                         ({"type": "avgpool2d", "kernel_size": 5}, 4),
                                         ({"type": "maxpool2d", "kernel_size": 2, "padding": 2}, 8),
                                         ({"type": "maxpool2d", "kernel_size": 3, "dilation": 3}, 6)])
def test_pytorch_rejects_what_the_check_rejects(layer, size):
    a = D.check({"input": [3, size, size], "layers": [layer]})
    assert a.problem.index == 0
    kw = {k: v for k, v in layer.items() if k not in ("type", "out_channels")}
    cls = D.LAYERS[layer["type"]].cls
    mod = nn.Conv2d(3, layer["out_channels"], **kw) if cls == "Conv2d" else getattr(nn, cls)(**kw)
    with pytest.raises(RuntimeError):
        mod(torch.zeros(1, 3, size, size))


# ---- files and `design:` model names -----------------------------------------------------------------------------
def test_saved_design_is_a_model_name(designs):
    path = D.save(D.preset("lenet5"))
    assert path == designs / "lenet5.json" and json.loads(path.read_text())["name"] == "lenet5"
    assert not list(designs.glob(".*tmp"))  # written through a temp file and a rename
    assert models.design_names() == ["design:lenet5.json"]
    info = models.info("design:lenet5.json")
    assert (info.input_size, info.in_channels, info.family) == (32, 3, "design")
    m = models.create("design:lenet5.json", num_classes=4)
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    (designs / "broken.json").write_text('{"layers": [{"type": "conv9"}]}')
    assert models.design_names() == ["design:lenet5.json"]  # a broken file is not offered
    with pytest.raises(ValueError, match=r"broken\.json: layer 1: unknown layer type \"conv9\""):
        models.info("design:broken.json")
    with pytest.raises(ValueError, match="Not saved: The design has no layers yet"):
        D.save(D.preset("empty"))
    assert D.file_name("My net: v2!") == "my-net-v2.json"


def test_design_paths_named_explicitly_work_and_browser_names_stay_in_the_designs_folder(designs, tmp_path):
    D.save(D.preset("lenet5"))
    elsewhere = tmp_path / "elsewhere" / "x.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(D.preset("lenet5").to_json())
    assert models.info(f"design:{elsewhere}").input_size == 32  # a path named explicitly (the CLI's user) works
    for name in (f"design:{elsewhere}", "design:../elsewhere/x.json"):  # what a browser sends: refused
        with pytest.raises(ValueError, match="is not a file in the designs folder"):
            D.resolve_path(name, inside_only=True)
    with pytest.raises(ValueError, match="A design is a .json file"):
        models.info("design:/etc/passwd")
    with pytest.raises(ValueError, match="No design file 'missing.json'"):
        models.create("design:missing.json")
    assert models.info(f"design:{designs / 'lenet5.json'}").input_size == 32  # an absolute path inside is fine
    assert D.resolve_path(f"design:{designs / 'lenet5.json'}", inside_only=True) == (designs / "lenet5.json").resolve()


def test_in_channels_follow_the_dataset(designs):
    D.save(D.preset("resnet_small"))
    m = models.create("design:resnet_small.json", num_classes=10, in_channels=1)
    assert m.conv1.in_channels == 1 and m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    pinned = {**D.PRESETS["lenet5"], "name": "pinned", "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 5, "in_channels": 3}] + D.PRESETS["lenet5"]["layers"][1:]}
    D.save(pinned)
    with pytest.raises(ValueError, match=r"^Design 'pinned': Layer 1 \(Conv2d\) expects 3 input channels but "
                                         r"receives 1\.$"):
        models.create("design:pinned.json", in_channels=1)


def test_checkpoints_load_only_into_the_same_design():
    a = models.from_design(D.PRESETS["lenet5"])
    relu_to_gelu = json.loads(json.dumps(D.PRESETS["lenet5"]))
    relu_to_gelu["layers"][6] = {"type": "gelu"}
    b = models.from_design(relu_to_gelu)  # the same state dict keys and shapes, another model
    ckpt = Checkpoint(a.state_dict(), {"model": "design:lenet5.json", **D.checkpoint_meta(a)})
    load_into(models.from_design(D.PRESETS["lenet5"]), ckpt, "design:lenet5.json")
    with pytest.raises(CheckpointError) as err:
        load_into(b, ckpt, "design:other.json")
    assert str(err.value) == (f"These weights were trained on design 'lenet5' ({a.design_hash}), not on "
                              f"design:other.json (design 'lenet5', {b.design_hash}): a design's weights load only "
                              "into the same design.")
    with pytest.raises(CheckpointError, match="not a design"):
        load_into(models.create("lenet5"), ckpt, "lenet5")
    load_into(b, Checkpoint(a.state_dict(), {}), "design:other.json")  # a bare state dict: keys and shapes decide


# ---- end to end: train, reload after an edit, resume refused, export, CLI -------------------------------------------
def test_a_design_trains_reloads_and_exports(designs, tmp_path):
    from cnnviz.inspect import loading
    from cnnviz.train import TrainConfig, fit
    from cnnviz import runs
    from cnnviz.runs.model import load_model
    from cnnviz.train.export import export_script

    D.save(D.preset("lenet5"))
    cfg = TrainConfig(model="design:lenet5.json", dataset="shapes", epochs=1, batch_size=64, device="cpu",
                      limit_train=256, limit_test=64)
    evs = list(fit(cfg, run_dir=tmp_path / "run"))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    meta = load_checkpoint(tmp_path / "run" / "last.safetensors").meta
    assert meta["model"] == "design:lenet5.json" and meta["design_hash"] == D.preset("lenet5").hash
    assert D.parse(meta["design"]) == D.preset("lenet5")

    # the file changes (and then disappears): the run still opens with the design it recorded
    D.save({**D.PRESETS["lenet5"], "layers": D.PRESETS["lenet5"]["layers"][:6] + [{"type": "gelu"}]
            + D.PRESETS["lenet5"]["layers"][7:]})
    run = runs.read_run(tmp_path / "run")
    model, _ = load_model(run)
    assert type(model.relu1).__name__ == "ReLU"
    loaded = loading.from_checkpoint(run.last_checkpoint, "lenet5")
    assert loaded.name == "design:lenet5.json" and loaded.trained
    resumed = list(fit(TrainConfig(**{**cfg.to_dict(), "epochs": 2}), resume=tmp_path / "run"))
    assert resumed[-1].kind == "error" and "a design's weights load only into the same design" in \
        resumed[-1].data["message"]
    (designs / "lenet5.json").unlink()
    assert load_model(run)[0].design_hash == meta["design_hash"]

    script = export_script(tmp_path / "run", tmp_path / "out" / "repro.py")
    text = script.read_text()
    assert "class Lenet5(nn.Module):" in text and "build_model = Lenet5" in text
    assert not re.search(r"^\s*(from|import)\s+(cnnviz|\.)", text, re.M)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["CNNVIZ_EXPORT_MAX_STEPS"] = "2"
    data = tmp_path / "folder"
    from PIL import Image
    for split in ("train", "test"):
        for c in range(3):
            (data / split / f"c{c}").mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (32, 32), (80 * c, 40 * i, 90)).save(data / split / f"c{c}" / f"{i}.png")
    p = subprocess.run([sys.executable, "-I", str(script), "--data", str(data), "--save", str(work / "w.pt")],
                       cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    state = torch.load(work / "w.pt", weights_only=True)
    ours = models.from_design(meta["design"], len(state["fc2.bias"]))
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_cli_trains_a_design_also_one_named_by_a_path_outside(designs, tmp_path):
    path = D.save(D.preset("lenet5"))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-m", "cnnviz", "train", "--dataset", "shapes", "--epochs", "1", "--batch-size", "64",
            "--device", "cpu", "--limit-train", "128", "--limit-test", "32", "--no-progress"]
    p = subprocess.run(args + ["--model", f"design:{path}", "--run-dir", str(tmp_path / "r")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["status"] == "finished"
    assert "(40,010 parameters)" in p.stderr
    outside = tmp_path / "x.json"
    outside.write_text(path.read_text())
    p = subprocess.run(args + ["--model", f"design:{outside}", "--run-dir", str(tmp_path / "r2")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)  # as --dataset folder:PATH: the path as given
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    p = subprocess.run(args + ["--model", f"design:{tmp_path / 'nope.json'}", "--run-dir", str(tmp_path / "r3")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 2 and "No design file" in p.stderr and "Traceback" not in p.stderr


def test_a_design_whose_activations_pass_the_server_budget_is_a_problem_of_that_layer(monkeypatch):
    wide = {"name": "wide", "input": [3, 1024, 1024], "layers": [
        {"type": "conv2d", "out_channels": 4096, "kernel_size": 1}, {"type": "adaptiveavgpool2d", "output_size": 1},
        {"type": "flatten"}, {"type": "linear", "out_features": "classes"}]}
    a = D.check(wide)
    assert a.total_params < 60_000  # passes the parameter and FLOP caps: only its activations are too big
    assert a.problem.index == 0 and "16,384 MB per image" in a.problem.message
    assert "memory budget of 1,024 MB (CNNVIZ_SERVER_BUDGET_MB)" in a.problem.message
    with pytest.raises(ValueError, match="memory budget"):
        D.from_design(wide)  # refused before anything is built
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", "65536")
    assert D.check(wide).problem is None
