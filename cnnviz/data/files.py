"""Image files as datasets: `folder:PATH` (an ImageFolder tree) and `zip:PATH` (the same tree in a zip).

Layout: `train/<class>/*` and `test/<class>/*` when both exist, else `<class>/*` with a fixed,
seeded, per-class 90/10 split. A single wrapping folder (as made by zipping a folder) is looked
through. Files are decoded with torchvision.io (libjpeg-turbo/libpng, fast) with Pillow as the
fallback (cnnviz.data.decode); unreadable files are skipped and counted, never fatal. Images of different sizes are
resized to the most common size; images with colour make the whole set RGB.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .registry import DatasetError, Progress, RawSplits, dataset_kind, report
from .decode import MAX_PIXELS, MAX_SIDE, decode_many, resize  # noqa: F401  (re-exported)
from .safezip import SafeZip, UnsafeZipError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
CHUNK = 2048              # files read/decoded per step
READ_THREADS = 8          # file reads overlap (I/O latency, not CPU)
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))  # JPEG batches decoded in parallel (GIL released)
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
    usable = [e for e in entries if os.path.splitext(e.rel)[1].lower() in IMAGE_EXTENSIONS
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
def _read(entry: Entry) -> bytes | None:
    try:
        return entry.read()
    except Exception:  # noqa: BLE001 - vanished / unreadable file: counted as skipped
        return None


def _decode_all(assigned: list[tuple[Entry, int, str]], classes: list[str], progress: Progress,
                layout_note: str, threads: int = 1) -> RawSplits:
    """Read and decode every entry in chunks: reads on `threads` threads one chunk ahead,
    JPEG decoding on DECODE_THREADS threads."""
    decoded: list[tuple[torch.Tensor, int, str]] = []
    skipped = {"train": 0, "test": 0}
    n = len(assigned)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    dpool = ThreadPoolExecutor(DECODE_THREADS) if DECODE_THREADS > 1 else None

    def read_all(entries: list[Entry]) -> list[bytes | None]:
        return [_read(e) for e in entries]

    def fetch(lo: int) -> list[Future]:
        """Start reading one chunk: one task per thread, not one per file (futures cost ~25 us)."""
        chunk = [e for e, _, _ in assigned[lo:lo + CHUNK]]
        if pool is None:
            done: Future = Future()
            done.set_result(read_all(chunk))
            return [done]
        step = -(-len(chunk) // threads)
        return [pool.submit(read_all, chunk[i:i + step]) for i in range(0, len(chunk), step)]

    try:
        pending = fetch(0)
        for lo in range(0, n, CHUNK):
            blobs = [b for f in pending for b in f.result()]  # this chunk's bytes (waits for the reads)
            if lo + CHUNK < n:
                pending = fetch(lo + CHUNK)              # the next chunk reads while this one decodes
            for (_, label, split), img in zip(assigned[lo:lo + CHUNK], decode_many(blobs, dpool, DECODE_THREADS)):
                if img is None:
                    skipped[split] += 1
                else:
                    decoded.append((img, label, split))
            done = min(n, lo + CHUNK)
            report(progress, 0.05 + 0.85 * done / n, f"decoding images {done:,}/{n:,}")
    finally:
        for p in (pool, dpool):
            if p is not None:
                p.shutdown(cancel_futures=True)
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
            t = resize(t, (h, w))
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


def _scan(root: Path) -> tuple[list[str], list[tuple[str, int, int, str]]]:
    """Every file under root as a relative posix path (sorted), and every directory as
    (relative path, mtime_ns, number of entries, hash of its sorted entry names).

    One os.scandir per directory and no stat per file: listing CIFAR-10's 60,000 files takes
    ~0.05 s where stat-ing each one takes ~0.5 s.
    """
    base = str(root)
    files: list[str] = []
    dirs: list[tuple[str, int, int, str]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(base, rel) if rel else base
        try:
            mtime = os.stat(path).st_mtime_ns
            with os.scandir(path) as it:
                names = []
                for e in it:
                    names.append(e.name)
                    sub = f"{rel}/{e.name}" if rel else e.name
                    if e.is_dir(follow_symlinks=False):
                        stack.append(sub)
                    elif e.is_file():
                        files.append(sub)
        except OSError:
            continue
        names.sort()
        dirs.append((rel, mtime, len(names), hashlib.sha1("\0".join(names).encode()).hexdigest()[:16]))
    files.sort()
    dirs.sort()
    return files, dirs


def folder_fingerprint(arg: str) -> object:
    """Cache key of a folder: its path and each directory's mtime and listing (see `_scan`).

    Adding, removing or renaming a file changes its directory's mtime and listing, so the cache
    is invalidated; overwriting a file in place under the same name does not (pass refresh=True
    to load_dataset, or touch the folder). Stat-ing every file would catch that too, but costs
    more than reading the whole cached dataset back.
    """
    root = _resolve_folder(arg)
    return [str(root), _scan(root)[1]]


@dataset_kind("folder", fingerprint=folder_fingerprint, takes_arg=True, builtin=False,
              description="an ImageFolder tree on disk: folder:PATH")
def load_folder(arg: str, download: bool, progress: Progress) -> RawSplits:
    root = _resolve_folder(arg)
    report(progress, 0.0, f"listing {root}")
    base = str(root)
    entries = [Entry(rel, (lambda p=f"{base}/{rel}": _read_file(p))) for rel in _scan(root)[0]]
    classes, assigned, layout = _assign(entries)
    return _decode_all(assigned, classes, progress, layout, threads=READ_THREADS)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


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
