"""Run directories: listing, torn metrics lines, resume de-duplication, delete, load_model."""

from __future__ import annotations

import json
import os

import pytest
import torch

from cnnviz.train import runs
from cnnviz.models.checkpoints import CheckpointError, load_checkpoint
from cnnviz.train import TrainConfig, fit


def _fake_run(root, name, lines, t=0.0):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model": "lenet5"}))
    (d / "metrics.jsonl").write_bytes(b"".join(lines))
    os.utime(d / "config.json", (t, t))
    return d


def test_runs_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNVIZ_RUNS", str(tmp_path / "x"))
    assert runs.runs_root() == tmp_path / "x"
    monkeypatch.delenv("CNNVIZ_RUNS")
    assert runs.runs_root() == runs.Path("runs")


def test_torn_last_line_is_skipped_and_killed_run_is_interrupted(tmp_path):
    d = _fake_run(tmp_path, "a", [b'{"kind": "start", "t": 5}\n', b'{"kind": "epoch", "epoch": 1, "t": 6}\n',
                                  b'{"kind": "epoch", "epo'])
    (d / "pid").write_text("999999999")  # no such process
    info = runs.load_run(d)
    assert [e["epoch"] for e in info.epochs] == [1]
    assert info.status == "interrupted" and info.created == 5


def test_resume_line_drops_steps_and_epochs_after_the_checkpoint(tmp_path):
    rows = [{"kind": "start"}, {"kind": "step", "step": 1}, {"kind": "step", "step": 2},
            {"kind": "epoch", "epoch": 1}, {"kind": "step", "step": 3}, {"kind": "step", "step": 4},
            {"kind": "resume", "epochs_done": 1, "global_step": 2}, {"kind": "start"},
            {"kind": "step", "step": 3}, {"kind": "epoch", "epoch": 2}, {"kind": "done", "status": "finished"}]
    d = _fake_run(tmp_path, "r", [(json.dumps(r) + "\n").encode() for r in rows])
    info = runs.load_run(d)
    assert [s["step"] for s in info.steps] == [1, 2, 3] and [e["epoch"] for e in info.epochs] == [1, 2]
    assert info.status == "finished"


def test_list_runs_newest_first_and_ignores_other_folders(tmp_path):
    _fake_run(tmp_path, "old", [b'{"kind": "start", "t": 100}\n'])
    _fake_run(tmp_path, "new", [b'{"kind": "start", "t": 200}\n'])
    (tmp_path / "not-a-run").mkdir()
    assert [r.run_id for r in runs.list_runs(tmp_path)] == ["new", "old"]
    assert runs.list_runs(tmp_path / "missing") == []


def test_delete_run_refuses_non_runs(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("x")
    with pytest.raises(ValueError, match="does not look like a training run"):
        runs.delete_run(tmp_path / "precious", root=tmp_path)
    assert (tmp_path / "precious" / "thesis.txt").exists()
    d = _fake_run(tmp_path, "r", [b'{"kind": "start"}\n'])
    runs.delete_run(d, root=tmp_path)
    assert not d.exists()


def test_load_model_per_epoch_matches_the_saved_weights(tmp_path):
    cfg = TrainConfig(model="lenet5", dataset="shapes", batch_size=64, epochs=2, device="cpu",
                      limit_train=256, limit_test=128)
    evs = list(fit(cfg, run_dir=tmp_path / "r"))
    assert evs[-1].data["status"] == "finished"
    info = runs.load_run(tmp_path / "r")
    m1, meta1 = runs.load_model(info, epoch=1)
    m2, meta2 = runs.load_model(info)
    assert meta1["epoch"] == 1 and meta2["epoch"] == 2 and not m1.training
    ref = load_checkpoint(tmp_path / "r" / "epoch-0001.safetensors").state_dict
    assert all(torch.equal(m1.state_dict()[k], ref[k]) for k in ref)
    assert not torch.equal(m1.state_dict()["fc_unit.2.weight"], m2.state_dict()["fc_unit.2.weight"])
    with pytest.raises(CheckpointError, match="no checkpoint for epoch 7"):
        runs.load_model(info, epoch=7)
