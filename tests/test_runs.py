"""The run store: listing from summaries, the one incremental reader (torn lines, the resume rule, a
bounded min/max step series), unique run ids, Status, delete, load_model."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch

from cnnviz import runs
from cnnviz.runs import Status
from cnnviz.runs.layout import new_run_dir
from cnnviz.runs.model import load_model
from cnnviz.runs.reader import MetricsReader, StepSeries
from cnnviz.models.checkpoints import CheckpointError, load_checkpoint
from cnnviz.train import TrainConfig, fit

from .runtools import runs_root  # noqa: F401  (fixture)


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
    assert runs.runs_root() == Path("runs")


def test_torn_last_line_is_skipped_and_killed_run_is_interrupted(tmp_path):
    d = _fake_run(tmp_path, "a", [b'{"kind": "start", "t": 5}\n', b'{"kind": "epoch", "epoch": 1, "t": 6}\n',
                                  b'{"kind": "epoch", "epo'])
    (d / "pid").write_text("999999999")  # no such process
    info = runs.read_run(d)
    assert [e["epoch"] for e in info.epochs] == [1]
    assert info.status == "interrupted" and info.created == 5


def test_resume_line_drops_steps_and_epochs_after_the_checkpoint(tmp_path):
    rows = [{"kind": "start"}, {"kind": "step", "step": 1}, {"kind": "step", "step": 2},
            {"kind": "epoch", "epoch": 1}, {"kind": "step", "step": 3}, {"kind": "step", "step": 4},
            {"kind": "resume", "epochs_done": 1, "global_step": 2}, {"kind": "start"},
            {"kind": "step", "step": 3}, {"kind": "epoch", "epoch": 2}, {"kind": "done", "status": "finished"}]
    d = _fake_run(tmp_path, "r", [(json.dumps(r) + "\n").encode() for r in rows])
    info = runs.read_run(d)
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
    info = runs.read_run(tmp_path / "r")
    m1, meta1 = load_model(info, epoch=1)
    m2, meta2 = load_model(info)
    assert meta1["epoch"] == 1 and meta2["epoch"] == 2 and not m1.training
    ref = load_checkpoint(tmp_path / "r" / "epoch-0001.safetensors").state_dict
    assert all(torch.equal(m1.state_dict()[k], ref[k]) for k in ref)
    assert not torch.equal(m1.state_dict()["fc_unit.2.weight"], m2.state_dict()["fc_unit.2.weight"])
    with pytest.raises(CheckpointError, match="no checkpoint for epoch 7"):
        load_model(info, epoch=7)


def test_status_is_one_type_that_reads_and_serialises_as_its_name():
    assert Status("finished") is Status.FINISHED and Status.FINISHED == "finished"
    assert json.dumps({"s": Status.RUNNING}) == '{"s": "running"}' and str(Status.QUEUED) == "queued"
    assert Status.RUNNING.live and Status.QUEUED.live and not Status.STOPPED.live
    assert Status.STARTING.training and not Status.QUEUED.training
    assert Status.of("nonsense") is Status.ERROR


def test_step_series_is_bounded_and_keeps_each_stretch_extremes():
    s = StepSeries(max_points=200)
    losses = [1.0] * 100_000
    losses[31_337] = 50.0  # a spike
    losses[77_001] = -3.0  # a dip
    for i, v in enumerate(losses, 1):
        s.add({"step": i, "loss": v})
    pts = s.points()
    assert len(pts) <= 201 and s.count == 100_000
    assert [p["step"] for p in pts] == sorted(p["step"] for p in pts)
    assert {"step": 31_338, "loss": 50.0} in pts and {"step": 77_002, "loss": -3.0} in pts
    assert pts[-1]["step"] == 100_000  # the newest step is always shown
    s.drop_after(50_000)
    assert max(p["step"] for p in s.points()) <= 50_000 and s.last["step"] <= 50_000


def test_the_reader_is_incremental_and_a_full_read_is_the_read_from_byte_zero(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    path = d / "metrics.jsonl"
    rows = [{"kind": "start", "t": 1}] + [{"kind": "step", "step": i, "loss": 1.0 / i, "t": 1 + i} for i in range(1, 9)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]) + '{"kind": "step", "st')
    live = MetricsReader(path)
    assert live.read() and live.steps.count == 3
    off = live.offset
    assert not live.read() and live.offset == off  # nothing new: nothing parsed
    with open(path, "a") as f:  # the torn line ends, and more follow
        f.write('ep": 4, "loss": 0.25, "t": 5}\n' + "".join(json.dumps(r) + "\n" for r in rows[5:]))
    assert live.read()
    full = MetricsReader(path)
    full.read()
    assert [p["step"] for p in live.steps.points()] == [p["step"] for p in full.steps.points()] == list(range(1, 9))


def test_a_run_keeps_a_summary_that_listing_reads_alone(tmp_path):
    cfg = TrainConfig(model="lenet5", dataset="shapes", batch_size=64, epochs=2, device="cpu",
                      limit_train=256, limit_test=64)
    evs = list(fit(cfg, run_dir=tmp_path / "r"))
    assert evs[-1].data["status"] == "finished"
    summ = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summ["state"] == "finished" and summ["epochs_done"] == 2 and summ["steps_logged"] == 8
    assert summ["best"]["test_acc"] == max(e["test_acc"] for e in runs.read_run(tmp_path / "r").epochs)
    (tmp_path / "r" / "metrics.jsonl").write_text("")  # listing must not need the metrics at all
    [snap] = runs.list_runs(tmp_path)
    assert snap.status == Status.FINISHED and snap.epochs_done == 2 and snap.steps is None
    assert snap.test_acc == summ["last_epoch"]["test_acc"] and snap.to_json()["status"] == "finished"


def test_a_run_written_before_summaries_lists_and_gets_one_once_ended(tmp_path):
    d = _fake_run(tmp_path, "old", [b'{"kind": "start", "t": 5}\n',
                                    b'{"kind": "epoch", "epoch": 1, "test_acc": 0.5, "t": 6}\n',
                                    b'{"kind": "done", "status": "stopped", "t": 7}\n'])
    [snap] = runs.list_runs(tmp_path)
    assert snap.status == Status.STOPPED and snap.epochs_done == 1 and snap.best == {"epoch": 1, "test_acc": 0.5}
    assert json.loads((d / "summary.json").read_text())["state"] == "stopped"


def test_run_ids_are_unique_when_many_threads_name_runs_at_once(tmp_path):
    made: list[Path] = []
    lock = threading.Lock()

    def name_some():
        for _ in range(64):
            d = new_run_dir("lenet5", "shapes", tmp_path)
            with lock:
                made.append(d)

    threads = [threading.Thread(target=name_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 256 and len({d.name for d in made}) == 256 and all(d.is_dir() for d in made)


def test_delete_refuses_the_root_nested_dotdot_and_symlinks_out(tmp_path):
    root = tmp_path / "runs"
    d = _fake_run(root, "r", [b'{"kind": "start"}\n'])
    outside = _fake_run(tmp_path, "outside", [b'{"kind": "start"}\n'])
    nested = _fake_run(d, "inner", [b'{"kind": "start"}\n'])
    (root / "link").symlink_to(outside)
    for victim in (root, nested, root / "r" / ".." / ".." / "outside", root / "link", outside):
        with pytest.raises(ValueError, match="not a run directory under the runs folder"):
            runs.delete_run(victim, root=root)
    assert outside.is_dir() and nested.is_dir() and d.is_dir()


def test_delete_refuses_a_running_and_a_queued_run_then_deletes_it_once_ended(runs_root):
    """Real run processes (one slot): the first holds at its gate (running), the second waits in the queue."""
    from cnnviz.runs import queue

    from .runtools import wait_for

    tiny = dict(model="lenet5", dataset="shapes", epochs=1, batch_size=64, device="cpu", limit_train=128,
                limit_test=64)
    running, queued = (queue.submit(TrainConfig(**tiny, seed=i), runs_root, dispatch_now=False) for i in range(2))
    for d in (running, queued):
        (d / runs.GATE_FILE).write_text("0")
    assert queue.dispatch(runs_root) == [running]
    wait_for(lambda: runs.read_run(running).status == Status.RUNNING, "the first run to train")
    assert runs.read_run(queued).status == Status.QUEUED
    with pytest.raises(ValueError, match="still training: stop it before deleting it"):
        runs.delete_run(running)
    with pytest.raises(ValueError, match="waiting in the queue: cancel it first"):
        runs.delete_run(queued)
    assert (running / runs.CONFIG_FILE).is_file() and (queued / runs.CONFIG_FILE).is_file()
    assert runs.read_run(running).status == Status.RUNNING and queue.position(queued) == 1
    assert queue.cancel(queued) and not queued.exists()
    runs.request_stop(running)
    wait_for(lambda: runs.read_run(running).status == Status.STOPPED, "the first run to stop")
    runs.delete_run(running)
    assert not running.exists()
