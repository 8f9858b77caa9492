"""Image files as datasets: `folder:PATH` (an ImageFolder tree) and `zip:PATH` (the same tree in a zip).

Layout: `train/<class>/*` and `test/<class>/*` when both exist, else `<class>/*` with a fixed,
seeded, per-class 90/10 split. A single wrapping folder (as made by zipping a folder) is looked
through. Files are decoded with torchvision.io (libjpeg-turbo/libpng, fast) with Pillow as the
fallback (cnnviz.data.batch_decode); unreadable files are skipped and counted, never fatal. Images of different sizes are
resized to the most common size; images with colour make the whole set RGB.

Bounded (`cnnviz.limits`): at most `max_images()` images; files read in chunks of at most CHUNK files and
CHUNK_BYTES bytes, files over MAX_FILE_BYTES skipped unread; before a chunk is decoded, the full-size pixel
bytes its headers claim are added up and compared with the bytes the files take on disk (in the zip):
above MAX_DECODE_RATIO the dataset is refused as a decompression bomb; the decoded images kept (and their
stacked copy) must fit the server's memory budget.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import limits
from .registry import DatasetError, Progress, RawSplits, dataset_kind, report
from .batch_decode import MAX_PIXELS, MAX_SIDE, decode_many, header_size, resize  # noqa: F401  (re-exported)
from .safezip import SafeZip, UnsafeZipError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
CHUNK = 2048              # files read/decoded per step, at most
CHUNK_BYTES = 64 * 2**20  # file bytes read per step, at most (one file may exceed it, up to MAX_FILE_BYTES)
MAX_FILE_BYTES = 64 * 2**20   # larger files are skipped unread (as the zip reader's per-entry limit)
RATIO_MIN_BYTES = 16 * 2**20  # the decoded/stored ratio is judged once the images claim this much
READ_THREADS = 8          # file reads overlap (I/O latency, not CPU)
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))  # JPEG batches decoded in parallel (GIL released)
SPLIT_SEED = 0
TEST_FRACTION = 0.1


@dataclass
class Entry:
    """One image file: its path relative to the dataset root (posix) and how to read its bytes."""

    rel: str
    read: Callable[[], bytes]
    size: int = 0             # bytes read (uncompressed)
    stored: int = 0           # bytes on disk or in the zip (compressed); the decode ratio's denominator


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
    if entry.size > MAX_FILE_BYTES:
        return None  # skipped unread, counted as unreadable
    try:
        return entry.read()
    except Exception:  # noqa: BLE001 - vanished / unreadable file: counted as skipped
        return None


class _Bounds:
    """Running totals of one dataset's decoding, checked before each chunk is decoded."""

    def __init__(self, n: int) -> None:
        self.n, self.claimed, self.stored, self.kept = n, 0, 0, 0
        self.budget = limits.server_budget_bytes()

    def add(self, entries: list[Entry], blobs: list[bytes | None], done: int) -> None:
        for e, data in zip(entries, blobs):
            if not data:
                continue
            self.stored += e.stored or len(data)
            try:
                size = header_size(data) or _probe_size(data)
            except Exception:  # noqa: BLE001 - not an image: decoding skips and counts it
                continue
            w, h = size
            if w * h > MAX_PIXELS:
                continue  # refused by the decoder without decoding
            self.claimed += w * h * 3
            scale = min(1.0, MAX_SIDE / max(w, h, 1))
            self.kept += 3 * max(1, round(w * scale)) * max(1, round(h * scale))
        ratio = self.claimed / max(self.stored, 1)
        if self.claimed > RATIO_MIN_BYTES and ratio > limits.MAX_DECODE_RATIO:
            raise DatasetError(f"Refused: the images claim {limits.fmt_bytes(self.claimed)} of pixels from "
                               f"{limits.fmt_bytes(self.stored)} of files ({ratio:,.0f}:1; at most "
                               f"{limits.MAX_DECODE_RATIO:,.0f}:1): a decompression bomb, not a dataset.")
        limits.check_budget(f"the decoded images ({done:,} of {self.n:,} files read so far, kept at most "
                            f"{MAX_SIDE} px and stacked)", 2 * self.kept, self.budget)


def _probe_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:  # the header only
        return im.size


def _chunks(entries: list[Entry]) -> list[tuple[int, int]]:
    """[lo, hi) ranges of at most CHUNK entries and CHUNK_BYTES bytes (at least one entry each)."""
    out, lo, size = [], 0, 0
    for i, e in enumerate(entries):
        if i > lo and (i - lo >= CHUNK or size + e.size > CHUNK_BYTES):
            out.append((lo, i))
            lo, size = i, 0
        size += e.size
    if lo < len(entries):
        out.append((lo, len(entries)))
    return out


def _decode_all(assigned: list[tuple[Entry, int, str]], classes: list[str], progress: Progress,
                layout_note: str, threads: int = 1) -> RawSplits:
    """Read and decode every entry in chunks: reads on `threads` threads one chunk ahead,
    JPEG decoding on DECODE_THREADS threads; bounded as the module docstring says."""
    decoded: list[tuple[torch.Tensor, int, str]] = []
    skipped = {"train": 0, "test": 0}
    n = len(assigned)
    if n > limits.max_images():
        raise DatasetError(f"Refused: {n:,} images, more than the {limits.max_images():,} one dataset may hold "
                           "here (CNNVIZ_MAX_IMAGES).")
    entries = [e for e, _, _ in assigned]
    chunks = _chunks(entries)
    bounds = _Bounds(n)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    dpool = ThreadPoolExecutor(DECODE_THREADS) if DECODE_THREADS > 1 else None

    def read_all(part: list[Entry]) -> list[bytes | None]:
        return [_read(e) for e in part]

    def fetch(k: int) -> list[Future]:
        """Start reading one chunk: one task per thread, not one per file (futures cost ~25 us)."""
        lo, hi = chunks[k]
        chunk = entries[lo:hi]
        if pool is None:
            done: Future = Future()
            done.set_result(read_all(chunk))
            return [done]
        step = -(-len(chunk) // threads)
        return [pool.submit(read_all, chunk[i:i + step]) for i in range(0, len(chunk), step)]

    try:
        pending = fetch(0) if chunks else []
        for k, (lo, hi) in enumerate(chunks):
            blobs = [b for f in pending for b in f.result()]  # this chunk's bytes (waits for the reads)
            bounds.add(entries[lo:hi], blobs, hi)
            if k + 1 < len(chunks):
                pending = fetch(k + 1)                   # the next chunk reads while this one decodes
            for (_, label, split), img in zip(assigned[lo:hi], decode_many(blobs, dpool, DECODE_THREADS)):
                if img is None:
                    skipped[split] += 1
                else:
                    decoded.append((img, label, split))
            del blobs
            report(progress, 0.05 + 0.85 * hi / n, f"decoding images {hi:,}/{n:,}")
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


def _scan(root: Path, sizes: dict[str, int] | None = None) -> tuple[list[str], list[tuple[str, int, int, str]]]:
    """Every file under root as a relative posix path (sorted), and every directory as
    (relative path, mtime_ns, number of entries, hash of its sorted entry names); `sizes`, when
    given, is filled with each file's size (one stat per file: only when loading).

    One os.scandir per directory and no stat per file: listing CIFAR-10's 60,000 files takes
    ~0.05 s where stat-ing each one takes ~0.4 s. More than 4 x `max_images()` entries is refused
    (a folder such as `/` is not a dataset, and is not scanned to its end on every rerun).
    """
    base = str(root)
    files: list[str] = []
    dirs: list[tuple[str, int, int, str]] = []
    stack = [""]
    cap, seen = 4 * limits.max_images(), 0
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
                        if sizes is not None:
                            sizes[sub] = e.stat().st_size
        except OSError:
            continue
        seen += len(names) + 1
        if seen > cap:
            raise DatasetError(f"Refused: the folder holds more than {cap:,} files and folders; a dataset here "
                               f"may have at most {limits.max_images():,} images (CNNVIZ_MAX_IMAGES).")
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
    sizes: dict[str, int] = {}
    entries = [Entry(rel, (lambda p=f"{base}/{rel}": _read_file(p)), sizes.get(rel, 0), sizes.get(rel, 0))
               for rel in _scan(root, sizes)[0]]
    classes, assigned, layout = _assign(entries)
    return _decode_all(assigned, classes, progress, layout, threads=READ_THREADS)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)  # a file grown since it was listed: still bounded
    if len(data) > MAX_FILE_BYTES:
        raise OSError("larger than the per-file limit")
    return data


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
        entries = [Entry(name, (lambda n=name: zf.read(n)), *zf.sizes(name)) for name in zf.names]
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


# ---------------------------------------------------------------- what a browser sends
def visitor_spec(spec: str) -> str:
    """A dataset spec typed in a browser: `folder:`/`zip:` paths must lie under `limits.data_roots()`
    (symlinks resolved) and come back resolved; other specs as they are. DatasetError otherwise, the
    same whether or not the path exists. (The command line uses paths as given.)"""
    from .registry import KINDS

    name, _, arg = str(spec).strip().partition(":")
    if name.strip().lower() not in ("folder", "zip") or name.strip().lower() not in KINDS:
        return str(spec).strip()
    kind = name.strip().lower()
    path = arg.strip()
    if not path:
        raise DatasetError(f"{kind}: needs a path inside the data folders, e.g. {kind}:{limits.data_root() / 'pets'}")
    try:
        real = limits.confine(path, what=f"The path {path[:120]!r}")
    except limits.PathRefused as exc:
        raise DatasetError(str(exc)) from None
    return f"{kind}:{real}"
