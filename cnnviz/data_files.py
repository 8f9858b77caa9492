"""Image files as datasets: `folder:PATH` (an ImageFolder tree) and `zip:PATH` (the same tree in a zip).

Layout: `train/<class>/*` and `test/<class>/*` when both exist, else `<class>/*` with a fixed,
seeded, per-class 90/10 split. A single wrapping folder (as made by zipping a folder) is looked
through. Files are decoded with torchvision.io (libjpeg-turbo/libpng, fast) with Pillow as the
fallback; unreadable files are skipped and counted, never fatal. Images of different sizes are
resized to the most common size; images with colour make the whole set RGB.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data_core import DatasetError, Progress, RawSplits, dataset_kind, report
from .safezip import SafeZip, UnsafeZipError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_SIDE = 256            # larger images are scaled down on decode (memory stays bounded)
MAX_PIXELS = 40_000_000   # refuse to decode anything claiming more pixels (decompression bombs)
SPLIT_SEED = 0
TEST_FRACTION = 0.1


@dataclass
class Entry:
    """One image file: its path relative to the dataset root (posix) and how to read its bytes."""

    rel: str
    read: Callable[[], bytes]


# ---------------------------------------------------------------- layout
def _strip_wrapper(rels: list[str]) -> int:
    """How many leading folders every path shares that are just a wrapper (e.g. 'mydata/')."""
    depth = 0
    parts = [r.split("/") for r in rels]
    while parts and all(len(p) >= depth + 3 for p in parts):
        first = {p[depth] for p in parts}
        if len(first) != 1 or next(iter(first)) in ("train", "test"):
            break
        depth += 1
    return depth


def _assign(entries: list[Entry]) -> tuple[list[str], list[tuple[Entry, int, str]], str]:
    """Classes, [(entry, label, split)], and a note describing the layout."""
    usable = [e for e in entries if Path(e.rel).suffix.lower() in IMAGE_EXTENSIONS
              and not any(part.startswith(".") or part == "__MACOSX" for part in e.rel.split("/"))]
    if not usable:
        raise DatasetError("No image files found (expected <class>/<image> or train/<class>/<image>, "
                           f"with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    depth = _strip_wrapper([e.rel for e in usable])
    items = [(e, e.rel.split("/")[depth:]) for e in usable]
    tops = {p[0] for _, p in items if len(p) >= 3}
    if {"train", "test"} <= tops:
        picked = [(e, p[1], p[0]) for e, p in items if len(p) >= 3 and p[0] in ("train", "test")]
        classes = sorted({c for _, c, _ in picked})
        index = {c: i for i, c in enumerate(classes)}
        return classes, [(e, index[c], s) for e, c, s in picked], "train/ and test/ folders"
    picked = [(e, p[0]) for e, p in items if len(p) >= 2]
    if not picked:
        raise DatasetError("Images must sit in one folder per class (<class>/<image>); "
                           "found images only at the top level.")
    classes = sorted({c for _, c in picked})
    index = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(SPLIT_SEED)
    out: list[tuple[Entry, int, str]] = []
    for c in classes:
        members = sorted((e for e, cc in picked if cc == c), key=lambda e: e.rel)
        order = rng.permutation(len(members))
        n_test = int(round(len(members) * TEST_FRACTION)) if len(members) > 1 else 0
        test_idx = set(order[:n_test].tolist())
        out += [(e, index[c], "test" if i in test_idx else "train") for i, e in enumerate(members)]
    return classes, out, f"no train/test folders: fixed seeded {100 - TEST_FRACTION * 100:.0f}/" \
                         f"{TEST_FRACTION * 100:.0f} split per class (seed {SPLIT_SEED})"


# ---------------------------------------------------------------- decoding
def _decode(data: bytes) -> torch.Tensor:
    """Bytes -> uint8 (C, H, W) with C in {1, 3}; raises on anything unreadable."""
    with Image.open(io.BytesIO(data)) as probe:  # header only: refuse pixel bombs before decoding
        w, h = probe.size
        if w * h > MAX_PIXELS:
            raise ValueError(f"{w}x{h} is too many pixels")
    try:
        from torchvision.io import ImageReadMode, decode_image
        img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
        if img.ndim == 4:  # animated GIF: first frame
            img = img[0]
    except RuntimeError:  # formats torchvision does not read (BMP, TIFF, PPM...): Pillow
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = im.convert("L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            arr = np.asarray(im)
        img = torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1)
    c = img.shape[0]
    if c == 2:
        img = img[:1]
    elif c == 4:
        img = img[:3]
    if max(img.shape[1:]) > MAX_SIDE:
        scale = MAX_SIDE / max(img.shape[1:])
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[2] * scale)))
        img = _resize(img, size)
    return img.contiguous()


def _resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    x = F.interpolate(img[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return x[0].round().clamp(0, 255).to(torch.uint8)


def _decode_all(assigned: list[tuple[Entry, int, str]], classes: list[str], progress: Progress,
                layout_note: str) -> RawSplits:
    decoded: list[tuple[torch.Tensor, int, str]] = []
    skipped = {"train": 0, "test": 0}
    n = len(assigned)
    step = max(1, n // 50)
    for i, (entry, label, split) in enumerate(assigned):
        try:
            decoded.append((_decode(entry.read()), label, split))
        except Exception:  # unreadable / corrupt / not an image: count it and carry on
            skipped[split] += 1
        if i % step == 0:
            report(progress, 0.05 + 0.85 * i / n, f"decoding images {i:,}/{n:,}")
    if not decoded:
        raise DatasetError(f"None of the {n:,} image files could be decoded.")
    sizes = Counter(tuple(t.shape[1:]) for t, _, _ in decoded)
    (h, w), _ = sizes.most_common(1)[0]
    channels = 3 if any(t.shape[0] == 3 for t, _, _ in decoded) else 1
    n_resized = sum(cnt for s, cnt in sizes.items() if s != (h, w))
    report(progress, 0.92, "stacking tensors")
    out: dict[str, tuple[list[torch.Tensor], list[int]]] = {"train": ([], []), "test": ([], [])}
    for t, label, split in decoded:
        if tuple(t.shape[1:]) != (h, w):
            t = _resize(t, (h, w))
        if t.shape[0] != channels:
            t = t.expand(channels, -1, -1)
        out[split][0].append(t)
        out[split][1].append(label)

    def stack(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        ims, labs = out[split]
        if not ims:
            return torch.empty((0, channels, h, w), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
        return torch.stack(ims).contiguous(), torch.tensor(labs, dtype=torch.int64)

    tr, trl = stack("train")
    te, tel = stack("test")
    if len(tr) == 0:
        raise DatasetError("The training split is empty (no readable images in train/).")
    notes = [layout_note, f"{h}x{w} ({'RGB' if channels == 3 else '1-channel greyscale'})"]
    if n_resized:
        notes.append(f"{n_resized:,} images of other sizes resized to {h}x{w}, the most common size")
    if channels == 3 and any(t.shape[0] == 1 for t, _, _ in decoded):
        notes.append("greyscale images converted to RGB")
    return RawSplits(tr, trl, te, tel, classes, skipped["train"], skipped["test"], "; ".join(notes))


# ---------------------------------------------------------------- folder:PATH
def _resolve_folder(arg: str) -> Path:
    path = Path(arg.strip()).expanduser()
    if not arg.strip():
        raise DatasetError("folder: needs a path, e.g. folder:/data/my_images")
    if not path.is_dir():
        raise DatasetError(f"Folder not found: {path} (expected <class>/<image> or train/<class>/<image> inside).")
    return path.resolve()


def _walk(root: Path) -> list[tuple[str, int, int]]:
    """(relative posix path, size, mtime_ns) for every file under root, sorted."""
    out: list[tuple[str, int, int]] = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                    elif e.is_file():
                        st = e.stat()
                        out.append((Path(e.path).relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
        except OSError:
            continue
    out.sort()
    return out


def folder_fingerprint(arg: str) -> object:
    root = _resolve_folder(arg)
    return [str(root), _walk(root)]


@dataset_kind("folder", fingerprint=folder_fingerprint, takes_arg=True, builtin=False,
              description="an ImageFolder tree on disk: folder:PATH")
def load_folder(arg: str, download: bool, progress: Progress) -> RawSplits:
    root = _resolve_folder(arg)
    report(progress, 0.0, f"listing {root}")
    entries = [Entry(rel, (lambda p=root / rel: p.read_bytes())) for rel, _, _ in _walk(root)]
    classes, assigned, layout = _assign(entries)
    return _decode_all(assigned, classes, progress, layout)


# ---------------------------------------------------------------- zip:PATH and uploaded zip bytes
def _open_zip(source: bytes | Path) -> SafeZip:
    try:
        return SafeZip(source)
    except UnsafeZipError as exc:
        raise DatasetError(f"Zip refused: {exc}.") from None


def load_zip_source(source: bytes | Path, progress: Progress) -> RawSplits:
    """Decode a dataset zip (bytes or a path) entirely in memory, after the safety checks."""
    report(progress, 0.0, "checking the zip")
    with _open_zip(source) as zf:
        entries = [Entry(name, (lambda n=name: zf.read(n))) for name in zf.names]
        classes, assigned, layout = _assign(entries)
        return _decode_all(assigned, classes, progress, layout + " (in a zip)")


def _resolve_zip(arg: str) -> Path:
    path = Path(arg.strip()).expanduser()
    if not arg.strip():
        raise DatasetError("zip: needs a path, e.g. zip:/data/my_images.zip")
    if not path.is_file():
        raise DatasetError(f"Zip file not found: {path}.")
    return path.resolve()


def zip_fingerprint(arg: str) -> object:
    path = _resolve_zip(arg)
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


@dataset_kind("zip", fingerprint=zip_fingerprint, takes_arg=True, builtin=False,
              description="the same tree inside a zip file: zip:PATH")
def load_zip(arg: str, download: bool, progress: Progress) -> RawSplits:
    return load_zip_source(_resolve_zip(arg), progress)
