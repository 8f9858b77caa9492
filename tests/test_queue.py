"""Runs as processes through the queue: order, the concurrency cap, racing dispatchers, kills and resume,
stop, sweeps, and the CLI's `train --queue`, `runs --json`, `stop`. Each test has its own runs root.

The waits below wait for a condition on the run directories (with a generous cap for a loaded
machine); nothing sleeps a fixed time and then counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnviz.train import TrainConfig
from cnnviz import runs
from cnnviz.runs import liveness
from cnnviz.runs import queue
from cnnviz.runs import sweeps

from .runtools import cli_here, runs_root, wait_for  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
TINY = dict(model="lenet5", dataset="shapes", epochs=1, batch_size=64, device="cpu", limit_train=256,
            limit_test=128)


@pytest.fixture
def root(runs_root):
    return runs_root


def status(d: Path) -> str:
    return runs.read_run(d).status


def lines(d: Path, kind: str) -> list[dict]:
    text = (d / runs.METRICS_FILE).read_text() if (d / runs.METRICS_FILE).exists() else ""
    return [x for x in map(json.loads, filter(None, text.splitlines())) if x.get("kind") == kind]


def test_three_runs_wait_in_order_and_each_starts_when_the_one_before_ends(root):
    dirs = [queue.submit(TrainConfig(**TINY, seed=i), root) for i in range(3)]
    # one slot: the first starts at once, the others wait in order with their positions
    assert status(dirs[0]) in ("starting", "running", "finished")
    assert [queue.position(d) for d in dirs[1:]] == [1, 2]
    assert [status(d) for d in dirs[1:]] == ["queued", "queued"]
    # no server, no dispatcher here: each run process starts the next as it exits
    wait_for(lambda: all(status(d) == "finished" for d in dirs), "the three runs to finish")
    starts = [lines(d, "start")[0]["t"] for d in dirs]
    dones = [lines(d, "done")[-1]["t"] for d in dirs]
    assert starts[1] >= dones[0] and starts[2] >= dones[1], (starts, dones)
    assert queue.entries(root) == []
    for d in dirs:
        assert "started: " in (d / runs.LOG_FILE).read_text()


def test_racing_dispatchers_never_start_one_run_twice(root, monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "50")
    dirs = [queue.submit(TrainConfig(**TINY, seed=i), root, dispatch_now=False) for i in range(6)]
    log = root.parent / "launches.txt"
    racer = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from cnnviz.runs import queue\n"
        "def launch(run_dir, **kw):\n"
        f"    fd = os.open({str(log)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
        "    os.write(fd, (Path(run_dir).name + '\\n').encode()); os.close(fd)\n"
        "    return True\n"
        "queue.launch = launch\n"
        "queue.dispatch()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", racer], env=env) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    launched = log.read_text().split()
    assert sorted(launched) == sorted(d.name for d in dirs)  # each exactly once
    assert queue.entries(root) == []


def _gated(root: Path, n: int) -> list[Path]:
    """`n` runs queued (not dispatched yet), each with its gate at 0: once started, a run holds before
    its first step (status "running") until the test removes its gate."""
    dirs = [queue.submit(TrainConfig(**TINY, seed=i), root, dispatch_now=False) for i in range(n)]
    for d in dirs:
        (d / runs.GATE_FILE).write_text("0")
    return dirs


def _launched(dirs: list[Path]) -> list[Path]:
    return [d for d in dirs if (d / runs.LAUNCHER_FILE).is_file()]


def _max_overlap(dirs: list[Path]) -> int:
    """The most runs that trained at once: each from its launch to its final line."""
    marks = []
    for d in dirs:
        marks += [(json.loads((d / runs.LAUNCHER_FILE).read_text())["t"], 1), (lines(d, "done")[-1]["t"], -1)]
    level = peak = 0
    for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_two_slots_train_two_runs_the_third_waits_at_position_1_and_starts_when_one_ends(root, monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "2")
    a, b, c = dirs = _gated(root, 3)
    assert queue.dispatch(root) == [a, b]
    wait_for(lambda: status(a) == status(b) == "running", "the first two runs to train")
    assert status(c) == "queued" and queue.position(c) == 1 and _launched(dirs) == [a, b]
    assert sorted(queue.active(root)) == sorted([a, b])
    assert queue.dispatch(root) == [] and status(c) == "queued"  # no third slot
    (a / runs.GATE_FILE).unlink()  # a trains to its end; its process starts the next queued run as it exits
    wait_for(lambda: status(c) == "running", "the third run to start when the first ended")
    assert status(a) == "finished" and status(b) == "running" and queue.entries(root) == []
    assert json.loads((c / runs.LAUNCHER_FILE).read_text())["t"] >= lines(a, "done")[-1]["t"]
    for d in (b, c):
        (d / runs.GATE_FILE).unlink()
    wait_for(lambda: all(status(d) == "finished" for d in dirs), "the runs to finish")
    assert _max_overlap(dirs) == 2


def test_racing_dispatchers_doing_real_launches_never_start_more_than_two(root, monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "2")
    dirs = _gated(root, 5)
    racer = "from cnnviz.runs import queue\nqueue.dispatch()\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", racer], env=env) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert _launched(dirs) == dirs[:2]  # the two oldest, each once
    assert [queue.position(d) for d in dirs[2:]] == [1, 2, 3]
    wait_for(lambda: all(status(d) == "running" for d in dirs[:2]), "two runs to train")
    assert _launched(dirs) == dirs[:2] and len(queue.active(root)) == 2
    for d in dirs:  # let them all go: each run's exit dispatches the next; two exits race for the slots
        (d / runs.GATE_FILE).unlink()
    wait_for(lambda: all(status(d) == "finished" for d in dirs), "the five runs to finish")
    assert queue.entries(root) == [] and _max_overlap(dirs) == 2


def _wait_for_checkpoint(d: Path):
    wait_for(lambda: (d / runs.LAST_WEIGHTS).is_file() and lines(d, "epoch"), "a first checkpoint")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_killed_run_shows_interrupted_and_resume_completes_it(root, sig):
    cfg = TrainConfig(**{**TINY, "epochs": 400, "limit_train": 128})
    d = queue.submit(cfg, root)
    _wait_for_checkpoint(d)
    pid, _ = liveness.read_pid(d)
    os.kill(pid, sig)
    info = wait_for(lambda: (lambda r: r if r.status == "interrupted" else None)(runs.read_run(d)),
                    "the run to show interrupted")
    assert f"pid {pid}" in info.reason and "without writing a final line" in info.reason
    assert "started: " in info.log_tail()
    done_before = info.epochs_done
    assert done_before >= 1
    resumed = TrainConfig(**{**cfg.to_dict(), "epochs": done_before + 2})
    queue.submit(resumed, root, resume_run_dir=d)
    wait_for(lambda: status(d) == "finished", "the resumed run to finish")
    info = runs.read_run(d)
    assert info.epochs_done == done_before + 2
    assert [e["epoch"] for e in info.epochs] == list(range(1, done_before + 3))


def test_stop_file_stops_a_process_run_with_a_checkpoint(root):
    d = queue.submit(TrainConfig(**{**TINY, "epochs": 400, "limit_train": 128}), root)
    _wait_for_checkpoint(d)
    out = subprocess.run([sys.executable, "-m", "cnnviz", "stop", str(d)], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0 and "stopping" in out.stdout
    wait_for(lambda: status(d) == "stopped", "the run to stop")
    assert lines(d, "checkpoint")[-1]["partial"] is True
    with pytest.raises(ValueError, match="outside|not a run directory under"):
        runs.delete_run(d, root=root / "elsewhere")
    runs.delete_run(d)
    assert not d.exists()


def test_delete_and_resume_refuse_a_running_or_queued_run(root):
    a = queue.submit(TrainConfig(**{**TINY, "epochs": 400, "limit_train": 128}), root)
    b = queue.submit(TrainConfig(**TINY), root)
    wait_for(lambda: status(a) == "running", "the first run to train")
    with pytest.raises(ValueError, match="still training"):
        runs.delete_run(a)
    with pytest.raises(ValueError, match="queue"):
        runs.delete_run(b)
    with pytest.raises(ValueError, match="already training or queued"):
        queue.submit(TrainConfig(**TINY), root, resume_run_dir=a)
    assert queue.cancel(b) and not b.exists()  # a new run that never started leaves nothing
    runs.request_stop(a)
    wait_for(lambda: status(a) == "stopped", "the first run to stop")


def test_cli_queue_runs_json_and_bad_input(root, capsys, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "cnnviz", *args], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=240)

    tiny = ["--model", "lenet5", "--dataset", "shapes", "--epochs", "1", "--limit-train", "256",
            "--limit-test", "128", "--device", "cpu"]
    first = cli("train", *tiny, "--queue")
    second = cli("train", *tiny, "--seed", "1", "--queue")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    d1, d2 = Path(first.stdout.strip().splitlines()[-1]), Path(second.stdout.strip().splitlines()[-1])
    assert d1.parent == root and d2.parent == root
    listing = json.loads(cli("runs", "--json").stdout)
    by_id = {r["run_id"]: r for r in listing}
    for key in ("run_id", "run_dir", "status", "epochs_done", "test_acc", "queue_position"):
        assert key in by_id[d1.name]
    wait_for(lambda: all(status(d) == "finished" for d in (d1, d2)), "both queued runs to finish")
    listing = {r["run_id"]: r for r in json.loads(cli("runs", "--json").stdout)}
    assert listing[d2.name]["status"] == "finished" and listing[d2.name]["epochs_done"] == 1
    assert 0 <= listing[d2.name]["test_acc"] <= 1 and listing[d2.name]["queue_position"] is None
    # one-line errors, exit code 2 (the first from a real process, the rest from the CLI's main() here)
    bad = cli("stop", str(root.parent))
    assert bad.returncode == 2 and "not a run directory" in bad.stderr and "Traceback" not in bad.stderr

    def cli(*args):  # noqa: F811 - the error paths: in this process
        return cli_here(capsys, monkeypatch, *args)

    bad = cli("stop", str(d1))
    assert bad.returncode == 2 and "not training" in bad.stderr
    bad = cli("train", *tiny, "--nproc", "0")
    assert bad.returncode == 2 and "at least 1" in bad.stderr
    bad = cli("train", *tiny, "--batch-size", "65", "--nproc", "2")
    assert bad.returncode == 2 and "does not split evenly" in bad.stderr
    bad = cli("train", *tiny, "--nproc", str((os.cpu_count() or 1) + 1))
    assert bad.returncode == 2 and "CPU cores" in bad.stderr


def test_max_runs_setting_is_checked(monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "two")
    with pytest.raises(ValueError, match="whole number"):
        queue.max_runs()
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        queue.max_runs()
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "3")
    assert queue.max_runs() == 3


def test_sweep_grid_parsing_and_refusals():
    grid = sweeps.expand({"lr": "1e-3, 3e-3", "batch_size": "64,128", "nesterov": "false"})
    assert len(grid) == 4 and grid[0] == {"lr": 1e-3, "batch_size": 64, "nesterov": False}
    assert sweeps.parse_values("limit_train", "all,500") == [None, 500]
    for grid, msg in (({"lr": "fast"}, "lr must be a number"), ({"batch_size": "6.5"}, "whole number"),
                      ({"colour": "red"}, "Unknown setting"), ({"lr": ""}, "No value"),
                      ({"seed": ",".join(map(str, range(65)))}, "at most 64")):
        with pytest.raises(ValueError, match=msg):
            sweeps.expand(grid)


def test_a_sweep_of_four_runs_completes_with_its_table(root, monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "2")
    with pytest.raises(ValueError, match="not valid"):  # nothing queued when one combination is bad
        sweeps.submit_grid({"lr": "1e-3,200"}, base=TINY, root=root)
    assert queue.entries(root) == [] and runs.list_runs(root) == []
    sweep_id, dirs = sweeps.submit_grid({"lr": "1e-3,1e-2", "batch_size": "32,64"}, base=TINY, root=root)
    assert len(dirs) == 4 and sweep_id in sweeps.sweep_ids(root)
    wait_for(lambda: all(status(d) == "finished" for d in dirs), "the sweep's runs to finish")
    rows = sweeps.table(sweep_id, root)
    assert len(rows) == 4 and {(r["lr"], r["batch_size"]) for r in rows} == {(1e-3, 32), (1e-3, 64), (1e-2, 32),
                                                                              (1e-2, 64)}
    assert rows[0]["best"] and not any(r["best"] for r in rows[1:])
    assert rows[0]["test_acc"] == max(r["test_acc"] for r in rows)
    from .pagetest import open_page  # the Runs page draws the comparison of these very runs

    at = open_page("runs", clean=True)
    assert at.selectbox(key="runs_sweep").value == sweep_id
    assert [c for c in at.get("plotly_chart") if "parcoords" in c.proto.spec]
