"""cnnviz.data: folder/zip trees the tests make, fabricated MNIST/CIFAR files, the decode cache, stats."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz import data as D
from cnnviz.data import batch_decode as data_decode, files as data_files, overview as data_summary


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """A private data root and cache for one test."""
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _img(rng: np.random.Generator, h: int = 12, w: int = 10, c: int = 3) -> np.ndarray:
    shape = (h, w, c) if c > 1 else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _make_tree(root: Path, layout: dict[str, dict[str, int]], seed: int = 0) -> dict[str, np.ndarray]:
    """PNG files root/<split>/<class>/<i>.png (split "" = no split folder); returns rel path -> pixels."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, classes in layout.items():
        for cls, n in classes.items():
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = _img(rng)
                (d / f"{i:03d}.png").write_bytes(_png(arr))
                written[(d / f"{i:03d}.png").relative_to(root).as_posix()] = arr
    return written


def _zip_tree(root: Path, wrapper: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, (f"{wrapper}/" if wrapper else "") + p.relative_to(root).as_posix())
    return buf.getvalue()


def _as_set(images: torch.Tensor) -> set[bytes]:
    return {x.numpy().tobytes() for x in images}


def _expected(written: dict[str, np.ndarray], prefix: str) -> set[bytes]:
    return {np.ascontiguousarray(a.transpose(2, 0, 1)).tobytes() for k, a in written.items() if k.startswith(prefix)}


# ---------------------------------------------------------------- folder: and zip:
def test_folder_with_train_and_test(dirs):
    root = dirs / "pets"
    written = _make_tree(root, {"train": {"cat": 4, "dog": 3}, "test": {"cat": 2, "dog": 1}})
    tr = D.load_dataset(f"folder:{root}", "train")
    te = D.load_dataset(f"folder:{root}", "test")
    assert tr.classes == ["cat", "dog"] and te.classes == ["cat", "dog"]
    assert tr.images.shape == (7, 3, 12, 10) and tr.images.dtype == torch.uint8
    assert te.images.shape == (3, 3, 12, 10)
    assert tr.class_counts() == [4, 3] and te.class_counts() == [2, 1]
    # the pixels are those written (PNG is lossless), and each image carries its folder's label
    assert _as_set(tr.images) == _expected(written, "train/")
    assert _as_set(te.images) == _expected(written, "test/")
    for x, y in zip(tr.images, tr.labels):
        cls = tr.classes[int(y)]
        assert x.numpy().tobytes() in _expected(written, f"train/{cls}/")
    assert "train/ and test/" in tr.note


def test_folder_without_splits_is_a_seeded_90_10_split_per_class(dirs):
    root = dirs / "flat"
    written = _make_tree(root, {"": {"a": 20, "b": 30, "c": 1}})
    tr = D.load_dataset(f"folder:{root}", "train")
    te = D.load_dataset(f"folder:{root}", "test")
    assert te.class_counts() == [2, 3, 0] and tr.class_counts() == [18, 27, 1]
    assert _as_set(tr.images) | _as_set(te.images) == _expected(written, "")
    assert not _as_set(tr.images) & _as_set(te.images)
    assert "90/10" in tr.note
    # the split depends only on the file names: a copy elsewhere, decoded afresh, splits the same way
    copy = dirs / "elsewhere" / "flat"
    _make_tree(copy, {"": {"a": 20, "b": 30, "c": 1}})
    te2 = D.load_dataset(f"folder:{copy}", "test", refresh=True)
    assert torch.equal(te2.images, te.images) and torch.equal(te2.labels, te.labels)


def test_zip_gives_the_same_dataset_as_the_folder(dirs):
    root = dirs / "tree"
    _make_tree(root, {"train": {"x": 3, "y": 2}, "test": {"x": 1, "y": 1}})
    blob = _zip_tree(root, wrapper="tree")  # zipping a folder wraps it in one top folder
    (dirs / "tree.zip").write_bytes(blob)
    for split in ("train", "test"):
        f = D.load_dataset(f"folder:{root}", split)
        z = D.load_dataset(f"zip:{dirs / 'tree.zip'}", split)
        u = D.load_dataset_from_zip_bytes(blob, split, name="tree.zip")
        for other in (z, u):
            assert other.classes == f.classes
            assert torch.equal(other.images, f.images) and torch.equal(other.labels, f.labels)
    assert "(in a zip)" in z.note


def test_zip_without_splits_uses_the_seeded_split(dirs):
    root = dirs / "flat"
    _make_tree(root, {"": {"a": 10, "b": 10}})
    blob = _zip_tree(root)
    f = D.load_dataset(f"folder:{root}", "test")
    u = D.load_dataset_from_zip_bytes(blob, "test")
    assert u.class_counts() == [1, 1] and torch.equal(u.images, f.images)


def test_unreadable_files_are_skipped_and_counted(dirs):
    root = dirs / "messy"
    _make_tree(root, {"train": {"a": 3, "b": 2}, "test": {"a": 1, "b": 1}})
    good = (root / "train" / "a" / "000.png").read_bytes()
    (root / "train" / "a" / "garbage.jpg").write_bytes(b"not an image at all")
    (root / "train" / "b" / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "train" / "b" / "empty.png").write_bytes(b"")
    jpeg = _jpeg(np.zeros((12, 10, 3), np.uint8))
    (root / "test" / "a" / "cut.jpg").write_bytes(jpeg[:40])
    (root / "train" / "a" / "notes.txt").write_text("not an image extension: ignored, not counted")
    (root / "train" / "a" / ".hidden.png").write_bytes(b"junk")  # hidden files are ignored
    tr = D.load_dataset(f"folder:{root}", "train")
    te = D.load_dataset(f"folder:{root}", "test")
    assert len(tr) == 5 and tr.skipped == 3
    assert len(te) == 2 and te.skipped == 1


def test_jpeg_claiming_huge_size_is_skipped_without_decoding(dirs):
    """A decompression bomb: a tiny JPEG whose frame header claims 60000x60000 pixels."""
    jpeg = bytearray(_jpeg(np.full((8, 8, 3), 128, np.uint8)))
    i = jpeg.find(b"\xff\xc0")
    jpeg[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
    assert data_decode.header_size(bytes(jpeg)) == (60000, 60000)
    root = dirs / "bomb"
    _make_tree(root, {"": {"a": 3}})
    (root / "a" / "bomb.jpg").write_bytes(bytes(jpeg))
    ds = D.load_dataset(f"folder:{root}", "train")
    assert ds.skipped + D.load_dataset(f"folder:{root}", "test").skipped == 1
    with pytest.raises(ValueError, match="too many pixels"):
        data_decode.decode(bytes(jpeg))


def test_header_size_agrees_with_pillow():
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (32, 32), (17, 300), (257, 3)]:
        for enc in (_png, _jpeg):
            data = enc(_img(rng, h, w))
            with Image.open(io.BytesIO(data)) as im:
                assert data_decode.header_size(data) == im.size
        buf = io.BytesIO()
        Image.fromarray(_img(rng, h, w)).save(buf, "JPEG", progressive=True)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            assert data_decode.header_size(buf.getvalue()) == im.size
    assert data_decode.header_size(b"GIF89a....") is None


def test_jpeg_batch_decode_matches_pillow():
    """libjpeg-turbo (torchvision) and Pillow's libjpeg decode the same JPEG to nearly the same pixels."""
    rng = np.random.default_rng(2)
    blobs = [_jpeg(_img(rng, 16, 16)) for _ in range(5)] + [b"junk", None]
    out = data_decode.decode_many(blobs)
    assert out[-1] is None and out[-2] is None
    for data, t in zip(blobs[:5], out[:5]):
        ref = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()).permute(2, 0, 1)
        assert t.shape == ref.shape
        assert (t.int() - ref.int()).abs().max() <= 2


def test_mixed_sizes_and_greyscale_become_one_rgb_size(dirs):
    root = dirs / "mixed"
    rng = np.random.default_rng(3)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            (root / cls / f"{i}.png").write_bytes(_png(_img(rng, 12, 10)))
    (root / "a" / "big.png").write_bytes(_png(_img(rng, 24, 20)))
    grey = _img(rng, 12, 10, c=1)
    (root / "b" / "grey.png").write_bytes(_png(grey))
    tr = D.load_dataset(f"folder:{root}", "train")
    te = D.load_dataset(f"folder:{root}", "test")
    both = torch.cat([tr.images, te.images])
    assert both.shape == (10, 3, 12, 10)
    assert "resized to 12x10" in tr.note and "greyscale images converted to RGB" in tr.note
    g = torch.from_numpy(grey)
    assert any(torch.equal(x, g.expand(3, -1, -1)) for x in both)


def test_all_greyscale_folder_stays_one_channel(dirs):
    root = dirs / "grey"
    rng = np.random.default_rng(4)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(_png(_img(rng, 8, 8, c=1)))
    ds = D.load_dataset(f"folder:{root}", "train")
    assert ds.channels == 1 and len(ds.mean) == 1


# ---------------------------------------------------------------- cache
def _count_decodes(monkeypatch) -> list[int]:
    calls = [0]
    real = data_files.decode_many

    def counting(*args):
        calls[0] += 1
        return real(*args)
    monkeypatch.setattr(data_files, "decode_many", counting)
    return calls


def test_second_load_reads_the_cache_not_the_files(dirs, monkeypatch):
    root = dirs / "c"
    _make_tree(root, {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    first = D.load_dataset(f"folder:{root}", "train")
    assert list((dirs / "cache").glob("folder-*.safetensors"))

    def broken(*args):
        raise AssertionError("decoded again instead of reading the cache")
    monkeypatch.setattr(data_files, "decode_many", broken)
    monkeypatch.setattr(data_decode, "decode", broken)
    messages = []
    again = D.load_dataset(f"folder:{root}", "train", progress=lambda f, m: messages.append(m))
    other = D.load_dataset(f"folder:{root}", "test")
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.mean == first.mean and again.classes == first.classes and len(other) == 2
    assert messages == ["loaded from the cache"]


def test_cache_is_invalidated_when_files_or_mtimes_change(dirs, monkeypatch):
    root = dirs / "c"
    _make_tree(root, {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    calls = _count_decodes(monkeypatch)
    D.load_dataset(f"folder:{root}", "train")
    assert calls[0] == 1
    D.load_dataset(f"folder:{root}", "train")
    assert calls[0] == 1                       # cached
    arr = np.zeros((12, 10, 3), np.uint8)
    (root / "train" / "a" / "new.png").write_bytes(_png(arr))
    ds = D.load_dataset(f"folder:{root}", "train")
    assert calls[0] == 2 and ds.class_counts() == [4, 3]   # a new file is seen
    st = os.stat(root / "train" / "b")
    os.utime(root / "train" / "b", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    D.load_dataset(f"folder:{root}", "train")
    assert calls[0] == 3                       # a directory's mtime changed
    D.load_dataset(f"folder:{root}", "train", refresh=True)
    assert calls[0] == 4                       # asked to re-read


def test_zip_cache_follows_the_zip_files_mtime(dirs, monkeypatch):
    root = dirs / "t"
    _make_tree(root, {"": {"a": 5, "b": 5}})
    z = dirs / "t.zip"
    z.write_bytes(_zip_tree(root))
    calls = _count_decodes(monkeypatch)
    D.load_dataset(f"zip:{z}")
    D.load_dataset(f"zip:{z}")
    assert calls[0] == 1
    st = z.stat()
    os.utime(z, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    D.load_dataset(f"zip:{z}")
    assert calls[0] == 2


def test_corrupt_cache_file_is_a_miss(dirs):
    root = dirs / "c"
    _make_tree(root, {"": {"a": 4, "b": 4}})
    first = D.load_dataset(f"folder:{root}")
    (cache,) = (dirs / "cache").glob("folder-*.safetensors")
    cache.write_bytes(b"garbage")
    again = D.load_dataset(f"folder:{root}")
    assert torch.equal(again.images, first.images)


def test_source_key_changes_with_the_folder(dirs):
    root = dirs / "k"
    _make_tree(root, {"": {"a": 2}})
    k1 = D.source_key(f"folder:{root}")
    assert k1 == D.source_key(f"folder:{root}")
    (root / "a" / "extra.png").write_bytes(_png(np.zeros((4, 4, 3), np.uint8)))
    assert D.source_key(f"folder:{root}") != k1
    assert D.source_key("mnist") is None  # not downloaded


# ---------------------------------------------------------------- statistics
def test_mean_std_equal_torchs_own_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (300, 3, 7, 9), generator=g, dtype=torch.uint8)
    x[:, 1] //= 3  # channels with different statistics
    mean, std = D.channel_stats(x, chunk=64)
    xf = x.float() / 255
    torch.testing.assert_close(torch.tensor(mean), xf.mean(dim=(0, 2, 3)), atol=2e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(std), xf.std(dim=(0, 2, 3), unbiased=False), atol=2e-6, rtol=0)
    m1, s1 = D.channel_stats(x[:, :1])
    assert len(m1) == 1 and abs(m1[0] - mean[0]) < 1e-6


def test_loaded_stats_are_the_train_splits(dirs):
    root = dirs / "s"
    _make_tree(root, {"train": {"a": 5, "b": 5}, "test": {"a": 3, "b": 3}})
    tr = D.load_dataset(f"folder:{root}", "train")
    te = D.load_dataset(f"folder:{root}", "test")
    xf = tr.images.float() / 255
    torch.testing.assert_close(torch.tensor(te.mean), xf.mean(dim=(0, 2, 3)), atol=2e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(te.std), xf.std(dim=(0, 2, 3), unbiased=False), atol=2e-6, rtol=0)


def test_normalize_notes_compare_with_the_tutorial_values():
    notes = {n.reference.label: n for n in data_summary.normalize_notes((0.4914, 0.4822, 0.4465),
                                                                       (0.2470, 0.2435, 0.2616))}
    assert notes["CIFAR-10, as tutorials hard-code it"].matches
    slip = notes["the tutorial notes' training loop"]
    assert not slip.matches and slip.max_mean_diff == pytest.approx(0.4822 - 0.456, abs=1e-4)
    grey = data_summary.normalize_notes((0.1307,), (0.3081,))
    assert [n.reference.label for n in grey if n.matches] == ["MNIST, as tutorials hard-code it"]
    assert data_summary.normalize_code((0.5,), (0.25,)) == "v2.Normalize(mean=[0.5000], std=[0.2500])"


# ---------------------------------------------------------------- specs and errors
@pytest.mark.parametrize("spec, words", [
    ("", "Empty dataset name"),
    ("imagenet", "Unknown dataset 'imagenet'"),
    ("folder:", "needs a path"),
    ("folder:/definitely/not/here", "Folder not found: /definitely/not/here"),
    ("zip:/definitely/not/here.zip", "Zip file not found"),
])
def test_bad_specs_are_clear_errors(dirs, spec, words):
    with pytest.raises(D.DatasetError, match=words) as err:
        D.load_dataset(spec)
    assert "\n" not in str(err.value)


def test_bad_split_and_empty_folder(dirs):
    with pytest.raises(D.DatasetError, match="Unknown split 'val'"):
        D.load_dataset("shapes", "val")
    (dirs / "empty" / "cls").mkdir(parents=True)
    (dirs / "empty" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(D.DatasetError, match="No image files found"):
        D.load_dataset(f"folder:{dirs / 'empty'}")
    (dirs / "toplevel").mkdir()
    (dirs / "toplevel" / "a.png").write_bytes(_png(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(D.DatasetError, match="one folder per class"):
        D.load_dataset(f"folder:{dirs / 'toplevel'}")
    bad = dirs / "allbad" / "cls"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"nope")
    with pytest.raises(D.DatasetError, match="None of the 1 image files could be decoded"):
        D.load_dataset(f"folder:{dirs / 'allbad'}")


# ---------------------------------------------------------------- torchvision datasets, offline
def _idx(path: Path, arr: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic 0x0000 08 <ndim>, big-endian dims, then bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("spec, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_fabricated_mnist_idx_files_load_offline(dirs, spec, folder):
    rng = np.random.default_rng(5)
    raw = dirs / "data" / folder / "raw"
    x_tr, y_tr = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 10, 30)
    x_te, y_te = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    _idx(raw / "train-images-idx3-ubyte", x_tr)
    _idx(raw / "train-labels-idx1-ubyte", y_tr)
    _idx(raw / "t10k-images-idx3-ubyte", x_te)
    _idx(raw / "t10k-labels-idx1-ubyte", y_te)
    tr = D.load_dataset(spec, "train")
    te = D.load_dataset(spec, "test")
    assert tr.images.shape == (30, 1, 28, 28) and te.images.shape == (7, 1, 28, 28)
    assert torch.equal(tr.images[:, 0], torch.from_numpy(x_tr.astype(np.uint8)))
    assert tr.labels.tolist() == y_tr.tolist() and te.labels.tolist() == y_te.tolist()
    assert tr.channels == 1 and len(tr.classes) == 10 and "in_channels=1" in tr.note
    assert tr.mean[0] == pytest.approx(x_tr.mean() / 255, abs=1e-5)


def test_fabricated_cifar10_batches_load_offline(dirs, monkeypatch):
    """Pickled batches in torchvision's layout; the md5 check patched as torchvision's own tests do."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    rng = np.random.default_rng(6)
    base = dirs / "data" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = {}
    for fname, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 5)]:
        batches[fname] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
        with open(base / fname, "wb") as f:
            pickle.dump({"data": batches[fname][0], "labels": batches[fname][1]}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    tr = D.load_dataset("cifar10", "train")
    te = D.load_dataset("cifar10", "test")
    assert tr.images.shape == (20, 3, 32, 32) and te.images.shape == (5, 3, 32, 32)
    assert tr.classes == names and tr.channels == 3
    # a CIFAR row is 1024 red values, then 1024 green, then 1024 blue, each row-major 32x32
    rows, labels = batches["data_batch_2"]
    assert torch.equal(tr.images[4], torch.from_numpy(rows[0].reshape(3, 32, 32)))
    assert int(tr.images[4, 1, 2, 3]) == int(rows[0][1024 + 2 * 32 + 3])
    assert tr.labels[4:8].tolist() == labels
    assert te.labels.tolist() == batches["test_batch"][1]


def test_missing_torchvision_dataset_says_where_the_files_go(dirs):
    with pytest.raises(D.DatasetError) as err:
        D.load_dataset("cifar10")
    msg = str(err.value)
    assert "not available offline" in msg and "Download" in msg
    assert str((dirs / "data" / "cifar-10-batches-py").resolve()) in msg and "data_batch_1" in msg
    assert "\n" not in msg


def test_failed_download_says_what_failed_and_where_to_put_the_files(dirs, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, root, train=True, download=False):
            if download:
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\n"
                                   "<urlopen error [Errno -2] Name or service not known>\n")
            raise RuntimeError("Dataset not found.")
    monkeypatch.setattr(tvd, "MNIST", Offline)
    with pytest.raises(D.DatasetError) as err:
        D.load_dataset("mnist", download=True)
    msg = str(err.value)
    assert msg.startswith("Downloading mnist failed (Error downloading train-images-idx3-ubyte.gz: "
                          "<urlopen error [Errno -2] Name or service not known>)")
    assert str((dirs / "data" / "MNIST" / "raw").resolve()) in msg and "\n" not in msg


# ---------------------------------------------------------------- the real CIFAR-10 JPEG copy
@pytest.mark.slow
def test_real_cifar10_jpeg_copy(cifar_jpeg, dirs):
    tr = D.load_dataset(f"folder:{cifar_jpeg}", "train")
    te = D.load_dataset(f"folder:{cifar_jpeg}", "test")
    assert tr.images.shape == (50000, 3, 32, 32) and te.images.shape == (10000, 3, 32, 32)
    assert tr.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert tr.class_counts() == [5000] * 10 and te.class_counts() == [1000] * 10
    assert tr.skipped == 0 and te.skipped == 0
    # JPEG round-off moves the well-known CIFAR-10 statistics only in the third decimal
    assert max(abs(a - b) for a, b in zip(tr.mean, (0.4914, 0.4822, 0.4465))) < 0.003
    assert max(abs(a - b) for a, b in zip(tr.std, (0.2470, 0.2435, 0.2616))) < 0.004
