"""Hostile dataset zips and folders: decoding bounded in memory, the dataset cache bounded on disk.

Each zip is loaded as the Datasets page loads an upload (`load_dataset_from_zip_bytes`) in a child
process whose real memory is measured (tests/hostile.py). Before the bounds, a 30 KB zip of
flat-colour 40-megapixel JPEGs was decoded at full size, up to 2,048 images at once (120 MB each).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnviz import data as D
from cnnviz.data import cache

from .hostile import measure, refused, under_budget

BUDGET_MB = 256


def _jpeg(im: Image.Image, quality: int = 75) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, blob in entries:
            zf.writestr(name, blob)
    return buf.getvalue()


@pytest.fixture(scope="module")
def zips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile-zips")
    rng = np.random.default_rng(0)
    flat = _jpeg(Image.new("RGB", (7000, 5700), (200, 30, 30)))  # 39.9 MP, ~0.6 MB, deflates to ~1 KB
    photo = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).resize((4000, 3000),
                                                                                       Image.Resampling.BICUBIC)
    photo_jpeg = _jpeg(photo, 90)  # 12 MP with texture: an honest big photo (ratio ~20:1)
    blocky = [_png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)) for _ in range(64)]
    tiny = _png(np.full((8, 8, 3), 9, np.uint8))
    made = {
        "flat_40mp": _zip([(f"{c}/{i}.jpg", flat) for c in "ab" for i in range(12)]),
        "big_photos": _zip([(f"{c}/{i}.jpg", photo_jpeg) for c in "ab" for i in range(3)]),
        "many": _zip([(f"{c}/{i}.png", tiny) for c in "ab" for i in range(30)]),
        "kept_over_budget": _zip([(f"{'ab'[i % 2]}/{i}.png", b) for i, b in enumerate(blocky)]),
    }
    out = {}
    for name, blob in made.items():
        out[name] = d / f"{name}.zip"
        out[name].write_bytes(blob)
    return out


def _attack(path: Path) -> str:
    return f"RESULT = len(D.load_dataset_from_zip_bytes(Path({str(path)!r}).read_bytes(), 'train'))"


# one tiny upload first, so what the first load imports (torchvision's decoders: ~170 MB) is not counted
SETUP = f"""from pathlib import Path
from cnnviz import data as D
D.load_dataset_from_zip_bytes({_zip([(f"{c}/{i}.png", _png(np.full((8, 8, 3), i, np.uint8)))
                                     for c in "ab" for i in range(3)])!r}, "train")
"""


def test_30kb_zip_of_flat_colour_40_megapixel_jpegs(zips, tmp_path):
    assert zips["flat_40mp"].stat().st_size < 30_000
    r = measure(SETUP, {"flat": _attack(zips["flat_40mp"])}, BUDGET_MB, {"CNNVIZ_CACHE": str(tmp_path)})["flat"]
    msg = refused(r, "DatasetError", "Refused: the images claim", "of pixels from", "at most 250:1",
                  "a decompression bomb")
    assert "GB of pixels" in msg or "MB of pixels" in msg
    under_budget(r, BUDGET_MB)


def test_big_photos_are_decoded_one_at_a_time_in_draft_mode(zips, tmp_path):
    """Six 12-megapixel JPEGs (36 MB each at full size): loaded, each decoded by libjpeg at 1/8 scale
    straight to about the kept size (at most 256 px), so memory barely moves."""
    r = measure(SETUP, {"photos": _attack(zips["big_photos"])}, BUDGET_MB, {"CNNVIZ_CACHE": str(tmp_path)})["photos"]
    assert r["error"] is None, r["error"]
    assert r["result"] >= 4  # the train split of 6 images (seeded 90/10 split per class)
    assert r["rise"] < 48 * 2**20, f"rose {r['rise'] / 2**20:.0f} MB: decoded at full size?"


def test_more_images_than_allowed(zips, tmp_path):
    r = measure(SETUP, {"many": _attack(zips["many"])}, BUDGET_MB,
                {"CNNVIZ_CACHE": str(tmp_path), "CNNVIZ_MAX_IMAGES": "50"})["many"]
    refused(r, "DatasetError", "Refused: 60 images, more than the 50", "CNNVIZ_MAX_IMAGES")
    under_budget(r, BUDGET_MB)


def test_decoded_images_over_the_budget(zips, tmp_path):
    """64 blocky 256x256 PNGs (~15 KB each, 1 MB in all): 12 MB kept, 24 MB with the stacked copy, over a
    16 MB budget: refused from the headers, before any is decoded."""
    r = measure(SETUP, {"kept": _attack(zips["kept_over_budget"])}, 16, {"CNNVIZ_CACHE": str(tmp_path)})["kept"]
    refused(r, "BudgetError", "the decoded images", "would need about", "over this server's memory budget of 16.0 MB")
    under_budget(r, 16)


def test_dataset_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    """Sets of ~32 KB into a 0.08 MB (84 KB) cache: two fit, the least recently used goes for a third."""
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNVIZ_CACHE_MB", "0.08")
    rng = np.random.default_rng(1)
    blobs = [_zip([(f"{c}/{i}.png", _png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
                   for c in "ab" for i in range(20)]) for _ in range(4)]
    D.load_dataset_from_zip_bytes(blobs[0], "train")
    first = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(first) == 1 and 30_000 < first[0].stat().st_size < 34_000
    os.utime(first[0], ns=(1, 1))  # long ago
    D.load_dataset_from_zip_bytes(blobs[1], "train")
    (second,) = set((tmp_path / "cache").glob("*.safetensors")) - set(first)
    # used a little later than blob 0's, long ago: the file system's clock ticks in milliseconds, so a hit
    # right after this write could otherwise carry the very same time and make the order a coin toss
    os.utime(second, ns=(2, 2))
    D.load_dataset_from_zip_bytes(blobs[0], "test")  # a hit: blob 0's file is now the most recently used
    D.load_dataset_from_zip_bytes(blobs[2], "train")  # over 84 KB: blob 1's file (least recently used) goes
    files = list((tmp_path / "cache").glob("*.safetensors"))
    assert first[0] in files and len(files) == 2
    assert sum(p.stat().st_size for p in files) <= 0.08 * 2**20
    monkeypatch.setenv("CNNVIZ_CACHE_MB", "0.02")  # smaller than one set: not kept at all, nothing else removed
    D.load_dataset_from_zip_bytes(blobs[3], "train")
    assert sorted(files) == sorted((tmp_path / "cache").glob("*.safetensors"))
    assert cache.evict(limit=0) and not list((tmp_path / "cache").glob("*.safetensors"))
