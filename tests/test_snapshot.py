"""Watching a run from its directory (another process trains it): the cached incremental snapshot,
statuses from what is alive, reused pids, queued and failed runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnviz.train import TrainConfig
from cnnviz import runs
from cnnviz.runs import queue
from cnnviz.runs import liveness
from cnnviz.runs.reader import MetricsReader


def _line(kind: str, **d) -> bytes:
    return (json.dumps({"kind": kind, "t": d.pop("t", 1000.0), **d}) + "\n").encode()


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs" / "r1"
    d.mkdir(parents=True)
    (d / runs.CONFIG_FILE).write_text(json.dumps(TrainConfig(epochs=2).to_dict()))
    return d


def test_the_reader_takes_only_new_complete_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    r = MetricsReader(p)
    assert not r.read()  # no file yet
    _append(p, _line("start") + _line("step", step=1))
    assert r.read() and r.steps.count == 1 and r.start["kind"] == "start"
    assert not r.read()
    torn = _line("step", step=2)
    _append(p, torn[:9])  # a line still being written waits for its end
    assert not r.read() and r.steps.count == 1
    _append(p, torn[9:] + b"{not json}\n" + _line("step", step=3))
    assert r.read() and [x["step"] for x in r.steps.points()] == [1, 2, 3]  # garbage skipped
    assert r.offset == p.stat().st_size
    p.write_bytes(_line("start"))  # replaced by a shorter file: read again from the start
    assert r.read() and r.steps.count == 0


def test_watch_follows_a_run_and_its_resume(tmp_path):
    d = _run_dir(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (d / runs.PID_FILE).write_text(f"{live.pid} {liveness.process_start_time(live.pid)}")
        assert runs.snapshot(d).status == "starting"
        m = d / runs.METRICS_FILE
        _append(m, _line("start", device="CPU", t=100.0))
        for i in range(1, 5):
            _append(m, _line("step", step=i, epoch=1, loss=2.0 - i / 10, progress=i / 8, t=100.0 + i,
                             memory="99 MiB resident"))
        snap = runs.snapshot(d)
        assert snap.status == "running" and snap.alive and snap.device == "CPU"
        assert [s["step"] for s in snap.steps] == [1, 2, 3, 4] and snap.progress == 0.5
        assert snap.eta_s == pytest.approx(3.0 * 0.5 / (0.5 - 0.125))  # (t4 - t1) * left / done
        assert snap.memory == "99 MiB resident"
        _append(m, _line("epoch", epoch=1, test_acc=0.5, progress=0.5) + _line("checkpoint", epoch=1))
        for i in range(5, 7):  # steps of epoch 2 that the kill will lose
            _append(m, _line("step", step=i, epoch=2, loss=1.0, progress=i / 8))
        live.kill()
        live.wait()
        snap = runs.snapshot(d)
        assert snap.status == "interrupted" and not snap.alive
        assert f"pid {live.pid}" in snap.reason
        # resumed: the lost steps go, the curve goes on from the checkpoint
        again = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        (d / runs.PID_FILE).write_text(f"{again.pid} {liveness.process_start_time(again.pid)}")
        _append(m, _line("resume", epochs_done=1, global_step=4) + _line("start", device="CPU", resumed=True))
        _append(m, _line("step", step=5, epoch=2, loss=0.9, progress=5 / 8))
        snap = runs.snapshot(d)
        assert snap.status == "running" and [s["step"] for s in snap.steps] == [1, 2, 3, 4, 5]
        _append(m, _line("epoch", epoch=2, test_acc=0.7, progress=1.0) + _line("done", status="finished"))
        again.kill()
        again.wait()
        snap = runs.snapshot(d)
        assert snap.status == "finished" and snap.progress == 1.0 and snap.memory == ""
        assert [e["epoch"] for e in snap.epochs] == [1, 2]
    finally:
        live.kill()


def test_a_reused_pid_is_not_taken_for_the_run(tmp_path):
    d = _run_dir(tmp_path)
    _append(d / runs.METRICS_FILE, _line("start"))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:  # the pid is alive, but it started at another time than the run's process
        (d / runs.PID_FILE).write_text(f"{other.pid} 12345")
        assert runs.read_run(d).status == "interrupted"
        (d / runs.PID_FILE).write_text(f"{other.pid} {liveness.process_start_time(other.pid)}")
        assert runs.read_run(d).status == "running" and runs.summary(d).status == "running"
    finally:
        other.kill()
        other.wait()


def test_queued_and_errored_runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("CNNVIZ_RUNS", str(root))
    d = queue.submit(TrainConfig(), root, dispatch_now=False)
    snap = runs.snapshot(d)
    assert snap.status == "queued" and snap.queue_position == 1 and snap.alive
    assert queue.cancel(d) and not d.exists()
    e = _run_dir(tmp_path)
    (e / runs.LOG_FILE).write_text("Traceback...\nRuntimeError: boom\n")
    _append(e / runs.METRICS_FILE, _line("start") + _line("error", message="RuntimeError: boom", advice="see log"))
    snap = runs.snapshot(e)
    assert snap.status == "error" and snap.error == "RuntimeError: boom" and "boom" in snap.log_tail()
    assert os.path.basename(snap.run_dir) == "r1"
