"""bench/gpu_data.py: the CIFAR copy packed for the GPU machine comes back byte for byte, and a
damaged blob or an index pointing outside the target is refused."""

from __future__ import annotations

import json

import pytest

from bench import gpu_data


def _tree(root):
    for split, cls, name, data in [("train", "cat", "0001.jpg", b"\xff\xd8cat"), ("train", "dog", "0002.jpg", b"dog!"),
                                   ("test", "cat", "0003.jpg", b"")]:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / name).write_bytes(data)


def test_pack_unpack_round_trip(tmp_path):
    _tree(tmp_path / "src")
    gpu_data.pack(tmp_path / "src", tmp_path / "packed")
    assert gpu_data.unpack(tmp_path / "packed", tmp_path / "out") == 3
    for p in (tmp_path / "src").rglob("*"):
        if p.is_file():
            assert (tmp_path / "out" / p.relative_to(tmp_path / "src")).read_bytes() == p.read_bytes()


def test_damaged_blob_and_escaping_paths_are_refused(tmp_path):
    _tree(tmp_path / "src")
    packed = tmp_path / "packed"
    blob = gpu_data.pack(tmp_path / "src", packed)
    blob.write_bytes(blob.read_bytes()[:-1] + b"?")
    with pytest.raises(SystemExit, match="sha256"):
        gpu_data.unpack(packed, tmp_path / "out")
    gpu_data.pack(tmp_path / "src", packed)
    meta = json.loads((packed / "cifar10.json").read_text())
    meta["files"][0][0] = "../escaped.jpg"
    (packed / "cifar10.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="outside"):
        gpu_data.unpack(packed, tmp_path / "out")
    assert not (tmp_path / "escaped.jpg").exists()
