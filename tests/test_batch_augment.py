"""cnnviz.augment.batch.BatchAugmenter against independent computations and torchvision's per-image path."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cnnviz import augment as A
from cnnviz.augment.batch import BatchAugmenter


def _pipe(*steps) -> A.Pipeline:
    return A.Pipeline.from_dict({"steps": [{"name": n, "params": p} for n, p in steps]})


def _batch(b=64, c=3, h=12, w=12, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (b,), generator=g))


def _f(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def test_none_is_plain_conversion_and_labels_untouched():
    x, y = _batch()
    out, yo = BatchAugmenter(A.preset("none"), "cpu", 10)(x, y)
    assert out.dtype == torch.float32 and torch.equal(_u8(out), x) and torch.equal(yo, y)


def test_flip_rate_and_each_output_is_original_or_mirror():
    x, y = _batch(b=2000, h=4, w=4)
    ba = BatchAugmenter(_pipe(("RandomHorizontalFlip", {"p": 0.5})), "cpu", 10)
    out = _u8(ba(x, y, torch.Generator().manual_seed(1))[0])
    same = (out == x).flatten(1).all(1)
    mirror = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirror).all())
    rate = float((mirror & ~same).float().mean())
    # per-image torchvision path on the same images, for comparison
    torch.manual_seed(1)
    t = v2.RandomHorizontalFlip(0.5)
    ref = torch.stack([t(xi) for xi in x[:2000]])
    ref_rate = float(((ref == x.flip(-1)).flatten(1).all(1) & ~(ref == x).flatten(1).all(1)).float().mean())
    assert abs(rate - 0.5) < 0.05 and abs(ref_rate - 0.5) < 0.05
    vf = BatchAugmenter(_pipe(("RandomVerticalFlip", {"p": 0.2})), "cpu", 10)
    outv = _u8(vf(x, y, torch.Generator().manual_seed(2))[0])
    assert abs(float((outv == x.flip(-2)).flatten(1).all(1).float().mean()) - 0.2) < 0.05


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_crops_are_exact_windows_of_the_padded_image(mode):
    x, y = _batch(b=200, h=8, w=8)
    fill = 7
    ba = BatchAugmenter(_pipe(("RandomCrop", {"size": 8, "padding": 2, "padding_mode": mode, "fill": fill})),
                        "cpu", 10)
    assert ba.fallback_steps == []
    out = _u8(ba(x, y, torch.Generator().manual_seed(0))[0])
    # independent padding (torchvision functional on each image) and unfold over all 5x5 offsets
    padded = torch.stack([TF.pad(xi, [2, 2, 2, 2], fill=fill, padding_mode=mode) for xi in x])   # (B,3,12,12)
    wins = padded.unfold(2, 8, 1).unfold(3, 8, 1)            # (B, 3, 5, 5, 8, 8)
    wins = wins.permute(0, 2, 3, 1, 4, 5).reshape(200, 25, 3, 8, 8)
    match = (wins == out[:, None]).flatten(2).all(2)          # (B, 25)
    assert bool(match.any(1).all()), "every output must be a window of the padded input"
    offsets = match.float().argmax(1)
    counts = torch.bincount(offsets, minlength=25)
    assert int((counts > 0).sum()) >= 20                      # offsets spread over the 25 positions


def test_fused_flips_and_crops_match_an_enumeration_of_the_per_image_results():
    x, y = _batch(b=60, h=8, w=8)
    p = _pipe(("RandomHorizontalFlip", {}), ("RandomVerticalFlip", {}),
              ("RandomCrop", {"size": 8, "padding": 2, "padding_mode": "reflect"}),
              ("RandomHorizontalFlip", {}), ("RandomCrop", {"size": 6, "padding": 0}))
    ba = BatchAugmenter(p, "cpu", 10)
    assert len(ba._ops) == 1 and ba.fallback_steps == []        # one fused gather
    out = _u8(ba(x, y, torch.Generator().manual_seed(0))[0])
    assert out.shape == (60, 3, 6, 6)
    for i in range(60):
        cands = []
        for fh in (False, True):
            for fv in (False, True):
                z = x[i].flip(-1) if fh else x[i]
                z = z.flip(-2) if fv else z
                zp = TF.pad(z, [2, 2, 2, 2], padding_mode="reflect")
                for t in range(5):
                    for le in range(5):
                        win = zp[:, t:t + 8, le:le + 8]
                        for w2 in (win, win.flip(-1)):
                            cands += [w2[:, a:a + 6, c:c + 6] for a in range(3) for c in range(3)]
        assert any(torch.equal(out[i], c) for c in cands), i


def test_crop_pad_if_needed_and_too_small_error():
    x, y = _batch(b=4, h=6, w=6)
    ba = BatchAugmenter(_pipe(("RandomCrop", {"size": 8, "padding": 0, "pad_if_needed": True})), "cpu", 10)
    assert ba(x, y)[0].shape == (4, 3, 8, 8)
    ba = BatchAugmenter(_pipe(("RandomCrop", {"size": 8, "padding": 0})), "cpu", 10)
    with pytest.raises(ValueError, match="larger than"):
        ba(x, y)


def test_deterministic_with_generator_and_rng_restored():
    x, y = _batch(b=32, h=32, w=32)
    ba = BatchAugmenter(A.preset("randaugment"), "cpu", 10)
    assert ba.fallback_steps == ["RandAugment"]
    state = torch.random.get_rng_state()
    a = ba(x, y, torch.Generator().manual_seed(3))[0]
    assert torch.equal(torch.random.get_rng_state(), state)
    b = ba(x, y, torch.Generator().manual_seed(3))[0]
    c = ba(x, y, torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resize_centercrop_normalize_match_torchvision_per_image():
    x, y = _batch(b=8, h=20, w=24)
    p = _pipe(("Resize", {"size": 16}), ("CenterCrop", {"size": 12}),
              ("Normalize", {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4]}))
    ba = BatchAugmenter(p, "cpu", 10)
    assert ba.normalizes and ba.fallback_steps == []
    out = ba(x, y)[0]
    assert out.shape[-2:] == ba.output_size((20, 24)) == (12, 12)
    t = p.build()
    ref = torch.stack([t(xi) for xi in x])
    assert torch.allclose(out, ref, atol=1e-5)


def test_normalize_channel_mismatch_is_a_clear_error():
    x, y = _batch(b=2, c=1, h=8, w=8)
    with pytest.raises(ValueError, match="3 mean values but the images have 1 channel"):
        BatchAugmenter(_pipe(("Normalize", {})), "cpu", 10)(x, y)
    out = BatchAugmenter(_pipe(("Normalize", {"mean": [0.5], "std": [0.5]})), "cpu", 10)(x, y)[0]
    assert torch.allclose(out, (_f(x) - 0.5) / 0.5, atol=1e-6)


def test_grayscale_mask_and_formula():
    x, y = _batch(b=400, h=4, w=4)
    out = BatchAugmenter(_pipe(("RandomGrayscale", {"p": 0.3})), "cpu", 10)(x, y, torch.Generator().manual_seed(0))[0]
    grey = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert abs(float(grey.float().mean()) - 0.3) < 0.08
    xf = _f(x[grey])
    lum = 0.2989 * xf[:, 0] + 0.587 * xf[:, 1] + 0.114 * xf[:, 2]
    assert torch.allclose(out[grey][:, 0], lum, atol=1.5 / 255)


def test_brightness_contrast_factors_within_range():
    x, y = _batch(b=300, h=6, w=6)
    xf = x.float().clamp(40, 200).to(torch.uint8)  # avoid clipping so ratios are clean
    out = BatchAugmenter(_pipe(("ColorJitter", {"brightness": 0.2, "contrast": 0, "saturation": 0, "hue": 0})),
                         "cpu", 10)(xf, y, torch.Generator().manual_seed(0))[0]
    ratio = (out * 255).flatten(1).sum(1) / xf.float().flatten(1).sum(1)
    assert float(ratio.min()) >= 0.8 - 0.01 and float(ratio.max()) <= 1.2 + 0.01
    assert float(ratio.std()) > 0.05                       # per-sample factors, not one per batch
    both = BatchAugmenter(_pipe(("ColorJitter", {"brightness": 0.3, "contrast": 0.3, "saturation": 0, "hue": 0})),
                          "cpu", 10)
    assert both.fallback_steps == []
    o2 = both(xf, y, torch.Generator().manual_seed(0))[0]
    assert o2.shape == xf.shape and 0 <= float(o2.min()) and float(o2.max()) <= 1
    full = BatchAugmenter(_pipe(("ColorJitter", {})), "cpu", 10)
    assert full.fallback_steps == ["ColorJitter"]


def test_random_erasing_boxes():
    x, y = _batch(b=500, h=16, w=16)
    x = x.clamp_min(1)  # no zero pixels, so erased (value 0) pixels are identifiable
    p = _pipe(("RandomErasing", {"p": 0.5, "scale": [0.05, 0.2], "ratio": [0.5, 2.0], "value": 0.0}))
    out = BatchAugmenter(p, "cpu", 10)(x, y, torch.Generator().manual_seed(0))[0]
    zero = (out == 0).all(1)                                   # (B, H, W)
    erased = zero.flatten(1).any(1)
    assert abs(float(erased.float().mean()) - 0.5) < 0.07
    for i in torch.nonzero(erased)[:50, 0]:
        rows = torch.nonzero(zero[i].any(1))[:, 0]
        cols = torch.nonzero(zero[i].any(0))[:, 0]
        h, w = len(rows), len(cols)
        assert bool(zero[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all())   # a filled rectangle
        assert int(zero[i].sum()) == h * w
        assert 0.05 * 256 * 0.6 <= h * w <= 0.2 * 256 * 1.4
    keep = ~zero[:, None].expand_as(out)
    assert torch.equal(_u8(out)[keep], x[keep])


def test_mixup_and_cutmix_labels_and_images():
    x, y = _batch(b=16, h=8, w=8)
    ba = BatchAugmenter(_pipe(("MixUp", {"alpha": 1.0})), "cpu", 10)
    out, soft = ba(x, y, torch.Generator().manual_seed(0))
    assert soft.shape == (16, 10) and torch.allclose(soft.sum(1), torch.ones(16))
    lam = float(soft[0, y[0]]) if y[0] != y[-1] else None
    if lam is not None:  # torchvision MixUp pairs each image with the previous one (roll by 1)
        assert torch.allclose(out[0], lam * _f(x[0]) + (1 - lam) * _f(x[-1]), atol=1e-5)
    cm = BatchAugmenter(_pipe(("CutMix", {"alpha": 1.0})), "cpu", 10)
    out, soft = cm(x, y, torch.Generator().manual_seed(0))
    own = (_u8(out) == x).all(1).flatten(1).float().mean(1)   # fraction of own pixels per image
    other = (_u8(out) == x.roll(1, 0)).all(1).flatten(1).float().mean(1)
    assert torch.allclose(own + other, torch.ones(16), atol=0.02)
    j = int(torch.nonzero(y != y.roll(1, 0))[0, 0])
    assert abs(float(soft[j, y[j]]) - float(own[j])) < 0.02
    both = BatchAugmenter(_pipe(("MixUp", {}), ("CutMix", {})), "cpu", 10)
    assert both.batch_steps == ["MixUp", "CutMix"] and both(x, y)[1].shape == (16, 10)


@pytest.mark.parametrize("name", A.preset_names())
def test_presets_shapes_and_range_match_per_image_path(name):
    x, y = _batch(b=16, h=32, w=32)
    p = A.preset(name)
    ba = BatchAugmenter(p, "cpu", 10)
    out, _ = ba(x, y, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ref = p.build()(x[0])
    assert out.shape[1:] == ref.shape and out.dtype == ref.dtype == torch.float32
    assert out.shape[-2:] == ba.output_size((32, 32))
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    # the batched path keeps each image's mean brightness roughly like the per-image path
    torch.manual_seed(0)
    refs = torch.stack([p.build()(xi) for xi in x])
    assert abs(float(out.mean()) - float(refs.mean())) < 0.06


def test_every_image_step_runs_batched_or_fallback():
    from cnnviz.augment.specs import SPECS
    steps = [(n, {}) for n, s in SPECS.items() if not s.batch_level and n not in ("Resize", "CenterCrop")]
    p = _pipe(("Resize", {"size": 36}), ("CenterCrop", {"size": 34}), *steps)
    x, y = _batch(b=4, h=40, w=40)
    ba = BatchAugmenter(p, "cpu", 10)
    out, _ = ba(x, y, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, *ba.output_size((40, 40)))
    assert set(ba.fallback_steps) == {"RandomResizedCrop", "ColorJitter", "GaussianBlur", "AutoAugment",
                                      "RandAugment", "TrivialAugmentWide"}


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
def test_fixed_rotation_and_affine_equal_torchvision_per_image(interp):
    x, y = _batch(b=6, h=20, w=24)
    for step in (("RandomRotation", {"degrees": [33.0, 33.0], "interpolation": interp, "fill": 9}),
                 ("RandomAffine", {"degrees": [-20.0, -20.0], "translate": None, "scale": [1.2, 1.2],
                                   "shear": [10.0, 10.0], "interpolation": interp, "fill": 0})):
        p = _pipe(step)
        ba = BatchAugmenter(p, "cpu", 10)
        assert ba.fallback_steps == []
        out = ba(x, y)[0]
        t = p.build()
        ref = torch.stack([t(xi) for xi in x])
        assert torch.equal(out, ref), step[0]


def test_random_rotation_and_affine_draw_per_sample():
    x, y = _batch(b=1, h=16, w=16)
    x = x.expand(64, -1, -1, -1).contiguous()
    for step in (("RandomRotation", {"degrees": 30.0}),
                 ("RandomAffine", {"degrees": 0.0, "translate": [0.2, 0.2], "scale": None})):
        out = BatchAugmenter(_pipe(step), "cpu", 10)(x, y.expand(64), torch.Generator().manual_seed(0))[0]
        distinct = {tuple(_u8(o).flatten().tolist()) for o in out}
        assert len(distinct) > 30, step[0]
    # pure translation by whole pixels: every output is a shifted copy (checked against torch.roll + zero fill)
    out = _u8(BatchAugmenter(_pipe(("RandomAffine", {"degrees": 0.0, "translate": [0.25, 0.25], "scale": None})),
                             "cpu", 10)(x, y.expand(64), torch.Generator().manual_seed(1))[0])
    for o in out[:16]:
        found = False
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                ref = torch.zeros_like(x[0])
                ys, xs = slice(max(dy, 0), 16 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0))
                ys0, xs0 = slice(max(-dy, 0), 16 + min(-dy, 0)), slice(max(-dx, 0), 16 + min(-dx, 0))
                ref[:, ys, xs] = x[0][:, ys0, xs0]
                found = found or torch.equal(o, ref)
        assert found


def test_discrete_rotation_quarter_turns_exact_and_uniform():
    x, y = _batch(b=1, h=8, w=8)
    x = x.expand(300, -1, -1, -1).contiguous()
    out = _u8(BatchAugmenter(_pipe(("RandomDiscreteRotation", {"angles": [90, 180, 270]})), "cpu", 10)(
        x, y.expand(300), torch.Generator().manual_seed(0))[0])
    ks = []
    for o in out:
        m = [k for k in (1, 2, 3) if torch.equal(o, torch.rot90(x[0], k, dims=(1, 2)))]
        assert len(m) == 1
        ks.append(m[0])
    counts = torch.bincount(torch.tensor(ks), minlength=4)[1:]
    assert int(counts.min()) > 70                      # ~100 each
    odd = _pipe(("RandomDiscreteRotation", {"angles": [45, -45]}))
    a = BatchAugmenter(odd, "cpu", 10)(x[:20], y.expand(20), torch.Generator().manual_seed(0))[0]
    r45 = _u8(TF.rotate(x[0], 45.0) .float() / 255)
    rm45 = _u8(TF.rotate(x[0], -45.0).float() / 255)
    assert all(torch.equal(_u8(o), r45) or torch.equal(_u8(o), rm45) for o in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here; the same code runs on CPU above")
def test_cuda_matches_cpu_for_batched_steps():
    x, y = _batch(b=32, h=16, w=16)
    p = _pipe(("RandomCrop", {"size": 16, "padding": 2}), ("RandomHorizontalFlip", {}), ("RandomErasing", {}))
    a = BatchAugmenter(p, "cpu", 10)(x, y, torch.Generator().manual_seed(0))[0]
    b = BatchAugmenter(p, "cuda", 10)(x, y, torch.Generator().manual_seed(0))[0]
    assert b.is_cuda and torch.allclose(a, b.cpu())
