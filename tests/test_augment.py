"""cnnviz.augment: spec table, JSON validation, presets, build(), to_code(), trace()."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from cnnviz import augment as A
from cnnviz.augment.specs import SPECS

IMAGE_STEPS = [n for n, s in SPECS.items() if not s.batch_level]


def _img(h: int = 40, w: int = 36, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _one(name: str, **params) -> A.Pipeline:
    return A.Pipeline.from_dict({"steps": [{"name": name, "params": params}]})


def _all_transforms() -> A.Pipeline:
    steps = [{"name": n} for n in IMAGE_STEPS if n not in ("Resize", "CenterCrop")]
    steps.insert(0, {"name": "Resize", "params": {"size": 40}})
    steps.insert(1, {"name": "CenterCrop", "params": {"size": 36}})
    return A.Pipeline.from_dict({"steps": steps + [{"name": "MixUp"}, {"name": "CutMix"}]})


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def _exec_code(code: str):
    ns: dict = {}
    exec(compile(code, "<to_code>", "exec"), ns)  # our own generated code, not user input
    return ns


# ---- every spec builds and applies ---------------------------------------------------------------
@pytest.mark.parametrize("name", IMAGE_STEPS)
def test_every_spec_applies_to_pil_and_uint8_tensor(name):
    t = _one(name).build()
    pil = _img(40, 40)
    ten = torch.from_numpy(np.array(pil)).permute(2, 0, 1).contiguous()
    for inp in (pil, ten):
        torch.manual_seed(1)
        out = t(inp)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.ndim == 3
        if name != "Normalize":
            assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    # PIL and tensor inputs give the same result (ToImage comes first)
    torch.manual_seed(5)
    a = t(pil)
    torch.manual_seed(5)
    b = t(ten)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_batch_level_specs_mix_a_batch(name):
    p = _one(name)
    assert p.build().transforms[-1].__class__.__name__ == "ToDtype"  # not part of the per-image build
    bt = p.build_batch(4)
    x = torch.rand(6, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(0)
    xo, yo = bt(x, y)
    assert xo.shape == x.shape and yo.shape == (6, 4)
    assert torch.allclose(yo.sum(1), torch.ones(6))


def test_spec_table_is_complete_and_defaults_valid():
    required = {"RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "RandomCrop", "Resize",
                "CenterCrop", "RandomResizedCrop", "RandomAffine", "ColorJitter", "RandomGrayscale",
                "GaussianBlur", "RandomErasing", "Normalize", "AutoAugment", "RandAugment",
                "TrivialAugmentWide", "MixUp", "CutMix", "RandomDiscreteRotation"}
    assert required <= set(SPECS)
    for name, spec in SPECS.items():
        if name != "RandomDiscreteRotation":
            assert hasattr(v2, name), name        # names are torchvision v2 class names
        for p in spec.params:
            assert p.help, (name, p.name)
        # defaults are valid and complete
        assert A.Pipeline.from_dict({"steps": [{"name": name}]}).steps[0].params == {
            p.name: p.default for p in spec.params}


# ---- to_code reproduces build ---------------------------------------------------------------------
@pytest.mark.parametrize("which", A.preset_names() + ["all"])
def test_to_code_reproduces_build(which):
    p = _all_transforms() if which == "all" else A.preset(which)
    code = p.to_code(num_classes=4)
    ns = _exec_code(code)
    mine, theirs = p.build(), ns["transform"]
    for seed in (0, 1, 2):
        for im in (_img(seed=seed), torch.from_numpy(np.array(_img(seed=seed))).permute(2, 0, 1)):
            torch.manual_seed(seed)
            a = mine(im)
            torch.manual_seed(seed)
            b = theirs(im)
            assert torch.equal(a, b)
    if p.batch_steps:
        x = torch.rand(4, 3, 8, 8)
        y = torch.tensor([0, 1, 2, 3])
        torch.manual_seed(3)
        a = p.build_batch(4)(x, y)
        torch.manual_seed(3)
        b = ns["batch_transform"](x, y)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_to_code_is_plain_literals():
    code = _all_transforms().to_code()
    assert code.startswith("import torch\nfrom torchvision.transforms import v2\n")
    assert "transform = v2.Compose([" in code
    for bad in ("eval", "exec", "__", "import os", "open("):
        assert bad not in code


def test_json_roundtrip_and_defaults_filled():
    p = A.Pipeline.from_json('{"steps": [{"name": "RandomRotation", "params": {"degrees": 15}}]}')
    assert p.steps[0].params == {"degrees": 15.0, "interpolation": "nearest", "fill": 0}
    assert A.Pipeline.from_json(p.to_json()) == p
    q = _all_transforms()
    assert A.Pipeline.from_json(q.to_json()) == q
    assert json.loads(q.to_json())["steps"][0]["name"] == "Resize"


# ---- validation -------------------------------------------------------------------------------------
BAD = [
    ("[1, 2]", "JSON object"),
    ('"cifar"', "JSON object"),
    ("{", "Not valid JSON"),
    ("{}", "steps"),
    ('{"steps": {}}', "steps"),
    ('{"steps": [], "extra": 1}', "Unknown top-level"),
    ('{"steps": [1]}', "step 1 must be an object"),
    ('{"steps": [{"name": "Rotate"}]}', "unknown transform 'Rotate'"),
    ('{"steps": [{"name": "__import__(\'os\')"}]}', "unknown transform"),
    ('{"steps": [{"name": "RandomRotation", "params": {"angle": 3}}]}', "unknown parameter"),
    ('{"steps": [{"name": "RandomRotation", "params": {"degrees": "15"}}]}', "a number or a list"),
    ('{"steps": [{"name": "RandomRotation", "params": {"degrees": [90, 180, 270]}}]}', "RandomDiscreteRotation"),
    ('{"steps": [{"name": "RandomRotation", "params": {"degrees": -5}}]}', ">= 0"),
    ('{"steps": [{"name": "RandomRotation", "params": {"degrees": [20, 10]}}]}', "larger than high"),
    ('{"steps": [{"name": "RandomHorizontalFlip", "params": {"p": 1.5}}]}', "out of range"),
    ('{"steps": [{"name": "RandomHorizontalFlip", "params": {"p": true}}]}', "must be a number"),
    ('{"steps": [{"name": "RandomCrop", "params": {"size": 3.5}}]}', "whole number"),
    ('{"steps": [{"name": "RandomCrop", "params": {"padding_mode": "wrap"}}]}', "must be one of"),
    ('{"steps": [{"name": "RandomCrop", "params": {"pad_if_needed": 1}}]}', "true or false"),
    ('{"steps": [{"name": "Resize", "params": {"interpolation": "__import__(\'os\')"}}]}', "must be one of"),
    ('{"steps": [{"name": "GaussianBlur", "params": {"kernel_size": 4}}]}', "odd"),
    ('{"steps": [{"name": "Normalize", "params": {"mean": [0.5, 0.5], "std": [0.2]}}]}', "as many std"),
    ('{"steps": [{"name": "Normalize", "params": {"std": [0, 1, 1]}}]}', "out of range"),
    ('{"steps": [{"name": "RandAugment", "params": {"magnitude": 40}}]}', "smaller than num_magnitude_bins"),
    ('{"steps": [{"name": "RandomDiscreteRotation", "params": {"angles": []}}]}', "list of 1 to 16"),
    ('{"steps": [{"name": "ColorJitter", "params": {"hue": NaN}}]}', "must be a number"),
    ('{"steps": [{"name": "MixUp", "params": "alpha"}]}', "'params' must be an object"),
    ('{"steps": [{"name": "MixUp", "extra": 1}]}', "unknown keys"),
    (json.dumps({"steps": [{"name": "RandomHorizontalFlip"}] * 40}), "Too many steps"),
    ("[" * 60000 + "]" * 60000, "too long"),
    ("[" * 20000 + "]" * 20000, "nested too deeply"),
]


@pytest.mark.parametrize("text,msg", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_json_raises_readable_value_error(text, msg):
    with pytest.raises(ValueError, match=None) as exc:
        A.Pipeline.from_json(text)
    assert msg in str(exc.value), str(exc.value)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 400


def test_resolve_preset_json_and_file(tmp_path):
    assert A.resolve("cifar-standard") == A.preset("cifar-standard")
    text = A.preset("randaugment").to_json()
    assert A.resolve(text) == A.preset("randaugment")
    f = tmp_path / "pipe.json"
    f.write_text(A.preset("autoaugment").to_json())
    assert A.resolve(str(f)) == A.preset("autoaugment")
    for bad in ("nonsense", str(tmp_path / "missing.json"), ""):
        with pytest.raises(ValueError):
            A.resolve(bad)
    assert A.preset_names() == ["none", "tutorial-mnist", "digit-safe", "cifar-standard", "autoaugment",
                                "randaugment"]
    with pytest.raises(ValueError, match="Unknown augmentation preset"):
        A.preset("nope")


def test_tutorial_preset_has_discrete_rotation_and_right_sizes():
    p = A.preset("tutorial-mnist")
    assert [s.name for s in p.steps] == ["RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation",
                                         "RandomDiscreteRotation", "Resize", "RandomCrop"]
    assert p.steps[2].params["degrees"] == 15.0
    assert p.steps[3].params["angles"] == [90, 180, 270]
    torch.manual_seed(0)
    assert p.build()(_img(28, 28)).shape == (3, 28, 28)


def test_digit_safe_preset_is_a_small_affine_without_flips():
    p = A.preset("digit-safe")
    assert [s.name for s in p.steps] == ["RandomAffine"]
    assert p.steps[0].params == {"degrees": 10.0, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "shear": None,
                                 "interpolation": "bilinear", "fill": 0}
    digit = torch.zeros(1, 28, 28, dtype=torch.uint8)
    digit[0, 6:22, 12:16] = 255                                   # a "1"
    for seed in range(10):
        torch.manual_seed(seed)
        out = p.build()(digit)
        assert out.shape == (1, 28, 28)                          # 28x28 stays 28x28
        rows, cols = torch.nonzero(out[0] > 0.5, as_tuple=True)
        assert int(rows.max() - rows.min()) > 2 * int(cols.max() - cols.min())   # still upright
    assert "6 upside down is a 9" in A.PRESET_HELP["digit-safe"]


# ---- label-changing steps (cnnviz.augment.labels) -------------------------------------------------
def test_tutorial_pipeline_changes_digit_labels_and_says_why():
    found = A.label_hazards(A.preset("tutorial-mnist"), "digits")
    assert [(h.index, h.name) for h in found] == [(1, "RandomHorizontalFlip"), (2, "RandomVerticalFlip"),
                                                   (4, "RandomDiscreteRotation")]
    assert "90, 180, 270" in found[2].what
    line = A.hazard_line("tutorial-mnist", "digits")
    assert "\n" not in line and "RandomDiscreteRotation" in line and "6 upside down is a 9" in line
    assert "RandomRotation" not in line.replace("RandomDiscreteRotation", "")   # 15 degrees is harmless


@pytest.mark.parametrize("dataset, classes", [("digits", None), ("digits:3", None), ("mnist", None),
                                              ("folder:/x", [str(d) for d in range(10)]),
                                              ("zip:/y.zip", [f"{d} - {w}" for d, w in enumerate(
                                                  ["zero", "one", "two", "three", "four", "five", "six",
                                                   "seven", "eight", "nine"])])])
def test_digit_datasets_are_recognised(dataset, classes):
    assert A.is_digit_dataset(dataset, classes)
    assert A.hazard_line("tutorial-mnist", dataset, classes)


@pytest.mark.parametrize("dataset", ["shapes", "cifar10", "fashion-mnist", "folder:/pets", "", None])
def test_other_datasets_get_no_warning(dataset):
    assert A.label_hazards("tutorial-mnist", dataset) == [] and A.hazard_line("tutorial-mnist", dataset) is None


@pytest.mark.parametrize("steps, expect", [
    ([{"name": "RandomHorizontalFlip", "params": {"p": 0.0}}], []),
    ([{"name": "RandomRotation", "params": {"degrees": 30}}], []),
    ([{"name": "RandomRotation", "params": {"degrees": 45}}], ["RandomRotation"]),
    ([{"name": "RandomRotation", "params": {"degrees": [170, 190]}}], ["RandomRotation"]),
    ([{"name": "RandomAffine", "params": {"degrees": 90}}], ["RandomAffine"]),
    ([{"name": "RandomDiscreteRotation", "params": {"angles": [0, 360, 10]}}], []),
    ([{"name": "RandomDiscreteRotation", "params": {"angles": [0, -90]}}], ["RandomDiscreteRotation"]),
    ([{"name": "RandomCrop", "params": {"size": 28, "padding": 2}}, {"name": "ColorJitter"}], []),
])
def test_which_steps_count(steps, expect):
    p = A.Pipeline.from_dict({"steps": steps})
    assert [h.name for h in A.label_hazards(p, "digits")] == expect
    assert [h.name for h in A.label_hazards(p.to_json(), "digits")] == expect   # JSON text works too


def test_digit_safe_none_and_unreadable_augment_are_quiet():
    for aug in ("digit-safe", "none", "", "not a preset", "{broken json"):
        assert A.hazard_line(aug, "digits") is None, aug


# ---- semantics checked independently ---------------------------------------------------------------
def test_discrete_rotation_draws_only_the_listed_angles():
    im = torch.arange(3 * 6 * 6, dtype=torch.uint8).view(3, 6, 6)   # asymmetric square
    t = _one("RandomDiscreteRotation", angles=[90, 180, 270]).build()
    rots = {k: torch.rot90(im, k, dims=(1, 2)) for k in (1, 2, 3)}  # 90 deg CCW = rot90 k=1
    seen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        out = _u8(t(im))
        match = [k for k, r in rots.items() if torch.equal(out, r)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {1, 2, 3}


def test_random_rotation_range_is_a_range_not_a_choice():
    # [90, 180] in RandomRotation is a RANGE: angles in between occur.
    p = _one("RandomRotation", degrees=[90, 180])
    t = p.build()
    angles = [A.trace(p, _img(16, 16), s)[1].drawn["angle"] for s in range(20)]
    assert all(90 <= a <= 180 for a in angles) and len({round(a) for a in angles}) > 5
    assert t is not None


def test_normalize_matches_formula_and_crop_is_a_padded_window():
    im = _img(32, 32)
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255
    out = _one("Normalize", mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5]).build()(im)
    ref = (x - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)) / torch.tensor([0.2, 0.25, 0.5]).view(3, 1, 1)
    assert torch.allclose(out, ref, atol=1e-6)
    padded = torch.zeros(3, 40, 40)
    padded[:, 4:36, 4:36] = x
    t = A.preset("cifar-standard").build()
    for seed in range(5):
        torch.manual_seed(seed)
        o = _u8(t(im)).float() / 255
        wins = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        assert any(torch.equal(o, w) or torch.equal(o, w.flip(-1)) for w in wins)


def test_trace_matches_build_and_reports_draws():
    p = A.Pipeline.from_dict({"steps": [
        {"name": "RandomHorizontalFlip"}, {"name": "RandomCrop", "params": {"size": 32, "padding": 4}},
        {"name": "ColorJitter"}, {"name": "RandomErasing", "params": {"p": 1.0}}, {"name": "Normalize"},
        {"name": "RandAugment"}]})
    im = _img(32, 32)
    for seed in (0, 1, 2, 3):
        tr = A.trace(p, im, seed)
        torch.manual_seed(seed)
        assert torch.allclose(tr[-1].image, p.build()(im))
        labels = [s.label for s in tr]
        assert labels[0] == "original" and labels[1] == "1. RandomHorizontalFlip" and "to float" in labels
        flip = tr[1]
        assert flip.drawn["applied"] == torch.equal(flip.image, tr[0].image.flip(-1))
        crop = tr[2].drawn
        padded = torch.nn.functional.pad(tr[1].image, (4, 4, 4, 4))
        assert torch.equal(tr[2].image, padded[:, crop["top"]:crop["top"] + 32, crop["left"]:crop["left"] + 32])
        assert {"brightness_factor", "contrast_factor", "saturation_factor"} <= set(tr[3].drawn)
        er = next(s for s in tr if "RandomErasing" in s.label).drawn
        assert er["applied"] and er["h"] > 0
        assert next(s for s in tr if "Normalize" in s.label).normalized
        assert len(tr[-1].drawn["ops"]) == 2


def test_apply_many_same_seed_same_result_and_restores_rng():
    p = A.preset("autoaugment")
    ims = [_img(32, 32, s) for s in range(4)]
    state = torch.random.get_rng_state()
    a, _ = A.apply_many(p, ims, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    b, _ = A.apply_many(p, ims, seed=7)
    c, _ = A.apply_many(p, ims, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    m = A.Pipeline.from_dict({"steps": [{"name": "MixUp"}]})
    outs, soft = A.apply_many(m, ims, seed=1, labels=[0, 1, 2, 3], num_classes=4)
    assert soft.shape == (4, 4) and len(outs) == 4


def test_to_display_undoes_normalize():
    p = _one("Normalize", mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    im = _img(8, 8)
    out = p.build()(im)
    back = A.to_display(p, out)
    assert np.abs(np.asarray(back).astype(int) - np.asarray(im).astype(int)).max() <= 1


def test_import_cnnviz_augment_specs_needs_no_torch():
    import subprocess
    import sys
    code = ("import sys, cnnviz.augment as A; p = A.resolve('cifar-standard'); p.to_code(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
