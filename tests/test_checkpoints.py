"""Checkpoints: round trip, atomic writes, and nothing from an untrusted file ever runs."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from cnnviz.models.checkpoints import CheckpointError, atomic_write_bytes, load_checkpoint, load_into, nonfinite_keys, save_checkpoint
from cnnviz.models import create


class _Evil:
    """Unpickling this would create a file (stands in for arbitrary code)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_with_meta(tmp_path):
    m = create("lenet5")
    meta = {"model": "lenet5", "classes": ["a", "b"], "mean": [0.5] * 3, "epoch": 3}
    p = save_checkpoint(m, tmp_path / "x" / "c.safetensors", meta)
    ck = load_checkpoint(p)
    assert ck.meta == meta
    m2 = load_into(create("lenet5"), ck)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert load_checkpoint(p.read_bytes()).meta == meta
    assert not [f for f in p.parent.iterdir() if f.name.endswith(".tmp")]


def test_torch_state_dict_and_wrapped_dicts():
    m = create("lenet5")
    for obj in (m.state_dict(), {"state_dict": m.state_dict(), "epoch": 4, "meta": {"model": "lenet5"}},
                {"model_state_dict": m.state_dict()}):
        buf = io.BytesIO()
        torch.save(obj, buf)
        ck = load_checkpoint(buf.getvalue())
        load_into(create("lenet5"), ck)
    assert ck.meta == {}


def test_module_and_compile_prefixes_are_stripped():
    m = create("lenet5")
    for prefix in ("module.", "_orig_mod.", "module._orig_mod."):
        buf = io.BytesIO()
        torch.save({prefix + k: v for k, v in m.state_dict().items()}, buf)
        m2 = load_into(create("lenet5"), load_checkpoint(buf.getvalue()))
        torch.testing.assert_close(m2.fc_unit[2].weight, m.fc_unit[2].weight)


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_does_not_run(tmp_path, how):
    target = tmp_path / "pwned"
    payload = {"state_dict": {"w": torch.zeros(1)}, "evil": _Evil(str(target))}
    if how == "torch.save":
        buf = io.BytesIO()
        torch.save(payload, buf)
        raw = buf.getvalue()
    else:
        raw = pickle.dumps(payload)
    # sanity: a plain unpickle WOULD run it (so the test can fail)
    if how == "pickle":
        probe = tmp_path / "probe"
        pickle.loads(pickle.dumps(_Evil(str(probe))))
        assert probe.exists()
    f = tmp_path / "evil.pt"
    f.write_bytes(raw)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(f)
    assert not target.exists()
    assert "nothing in the file was run" in str(e.value) or "Not a PyTorch" in str(e.value)


def test_whole_pickled_model_refused_with_advice():
    buf = io.BytesIO()
    torch.save(create("lenet5"), buf)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_checkpoint(buf.getvalue())


@pytest.mark.parametrize("raw", [b"", b"hello world, not a checkpoint", os.urandom(4096),
                                 (100).to_bytes(8, "little") + b"{not json" + b"x" * 200])
def test_garbage_gives_clear_error(raw):
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="No such checkpoint"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_safetensors_with_odd_metadata():
    raw = st_save({"a": torch.zeros(2)}, metadata={"format": "cnnviz-1", "meta": "[1, 2]"})
    assert load_checkpoint(raw).meta == {}
    raw = st_save({"a": torch.zeros(2)}, metadata={"format": "cnnviz-1", "meta": "{broken"})
    assert load_checkpoint(raw).meta == {}


def test_wrong_architecture_names_keys_and_shapes(tmp_path):
    p = save_checkpoint(create("resnet_small"), tmp_path / "r.safetensors", {"model": "resnet_small"})
    with pytest.raises(CheckpointError) as e:
        load_into(create("lenet5"), load_checkpoint(p), "lenet5")
    msg = str(e.value)
    assert "does not fit lenet5" in msg and "missing: conv_unit.0.weight" in msg
    assert "unexpected: fc.bias, fc.weight, layers.0.0.bn1.bias" in msg and "more)" in msg and "resnet_small" in msg


def test_wrong_shapes_named(tmp_path):
    p = save_checkpoint(create("lenet5", num_classes=4), tmp_path / "l.safetensors")
    with pytest.raises(CheckpointError, match=r"fc_unit.2.weight: file \(4, 32\) vs model \(10, 32\)"):
        load_into(create("lenet5"), load_checkpoint(p))


def test_nonfinite_keys():
    sd = create("lenet5").state_dict()
    sd["fc_unit.2.bias"] = torch.full((10,), float("nan"))
    assert nonfinite_keys(sd) == ["fc_unit.2.bias"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_meta_is_json(tmp_path):
    p = save_checkpoint({"w": torch.ones(2)}, tmp_path / "w.safetensors", {"k": [1, 2]})
    n = int.from_bytes(p.read_bytes()[:8], "little")
    header = json.loads(p.read_bytes()[8:8 + n])
    assert json.loads(header["__metadata__"]["meta"]) == {"k": [1, 2]}
    assert Path(p).suffix == ".safetensors"


def test_dataset_label_for_captions():
    from cnnviz.inspect.loading import dataset_label

    assert dataset_label("folder:../shared/data/cifar10-jpeg") == "cifar10-jpeg"
    assert dataset_label("zip:/tmp/x/pets.zip") == "pets.zip"
    assert dataset_label("folder:/data/mine/") == "mine"
    assert dataset_label("cifar10") == "cifar10"


def test_a_full_disk_while_a_run_checkpoints_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """ENOSPC in the middle of writing the next checkpoint: the run ends in error, the last good
    checkpoint still loads (and resumes), and no temporary file is left behind."""
    import errno

    from cnnviz.train import TrainConfig, fit
    from cnnviz import runs

    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu", limit_train=64,
                      limit_test=32)
    run_dir = tmp_path / "run"
    assert list(fit(cfg, run_dir=run_dir))[-1].data["status"] == "finished"
    good = (run_dir / runs.LAST_WEIGHTS).read_bytes()
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: FullDisk(real_fdopen(fd, mode, *a, **k)))
    events = list(fit(TrainConfig(**{**cfg.to_dict(), "epochs": 2}), resume=run_dir))
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert events[-1].kind == "error" and "No space left" in events[-1].data["message"]
    assert (run_dir / runs.LAST_WEIGHTS).read_bytes() == good
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    ckpt = load_checkpoint(run_dir / runs.LAST_WEIGHTS)
    assert ckpt.meta["epoch"] == 1
    assert list(fit(TrainConfig(**{**cfg.to_dict(), "epochs": 2}), resume=run_dir))[-1].data["status"] == "finished"
