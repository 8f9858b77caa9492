"""Runs and sweeps on a real Ray cluster (tests/raycluster.py: a head and a worker node on this machine,
one CPU each, 127.0.0.1): placement on both nodes, at most as many at once as CPUs, SIGKILL ->
interrupted -> resumed on the cluster, Stop -> stopped with a checkpoint, a fresh server process
lists the same live runs, and a wrong RAY_ADDRESS is one line with nothing queued lost. One cluster
for the whole module; every run is tiny (shapes, lenet5, 64-128 images, device cpu)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnnviz import runs
from cnnviz.runs import Status, queue, read_run, request_stop, summary
from cnnviz.runs.liveness import read_launcher, read_pid
from cnnviz.train import TrainConfig

from .pagetest import open_page
from .raycluster import RayCluster, free_port
from .runtools import kill_runs_under, runs_root, wait_for  # noqa: F401 - runs_root is a fixture

ray = pytest.importorskip("ray", reason="requirements-cluster.txt (ray[default]) is not installed")
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="shapes", model="lenet5", limit_train=64, limit_test=32, epochs=1, device="cpu", batch_size=32)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster(cpus=(1, 1)).start()
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture
def on_ray(runs_root, cluster, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CNNVIZ_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    monkeypatch.delenv("CNNVIZ_MAX_RUNS", raising=False)  # the cluster's CPUs decide
    yield runs_root
    for d in runs_root.iterdir():  # end this test's jobs still alive (the run processes die with them)
        rec = read_launcher(d) if d.is_dir() else None
        if rec and rec.get("job_id"):
            from cnnviz.runs.ray_executor import RayExecutor

            RayExecutor(cluster.address).stop(d, rec)


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _cli(*args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnviz", *args], cwd=ROOT, env=_env(**extra), capture_output=True,
                          text=True, timeout=300)


def _jobs(cluster) -> dict:
    from ray.job_submission import JobSubmissionClient

    return {j.submission_id: j for j in JobSubmissionClient(cluster.address).list_jobs() if j.submission_id}


def _ended_jobs(cluster, dirs: list[Path]) -> dict | None:
    jobs = _jobs(cluster)
    return jobs if all(str(jobs[d.name].status.value) == "SUCCEEDED" for d in dirs) else None


def _wait_status(d: Path, status: Status, what: str, timeout: float = 120) -> None:
    try:
        wait_for(lambda: _status(d) == status, what, timeout)
    except pytest.fail.Exception:
        s = summary(d)
        pytest.fail(f"{what}: it is {s.status} ({s.reason}); launcher {read_launcher(d)}; queue "
                    f"{queue.entries(d.parent)}; log: {(d / runs.LOG_FILE).read_text()[-1500:]}")


def _status(d: Path) -> Status:
    return summary(d).status


def test_the_default_executor_imports_no_ray(tmp_path):
    code = ("import sys\nimport cnnviz, cnnviz.runs, cnnviz.runs.queue, cnnviz.runs.status, cnnviz.cli\n"
            "from streamlit.testing.v1 import AppTest\n"
            "at = AppTest.from_file('pages/training.py', default_timeout=120); at.run()\n"
            "assert not at.exception, at.exception\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    env = _env(CNNVIZ_RUNS=str(tmp_path / "runs"))
    env.pop("CNNVIZ_EXECUTOR", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_sweep_runs_on_both_nodes_at_most_two_at_once_and_the_runs_page_shows_it(on_ray, cluster):
    out = _cli("sweep", "--lr", "1e-3,2e-3,3e-3,4e-3", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()])
    assert out.returncode == 0, out.stderr[-2000:]
    sweep = json.loads(out.stdout.strip().splitlines()[-1])
    dirs = [Path(d) for d in sweep["run_dirs"]]
    # the sweep's dispatch submitted as many as the cluster could start (2 CPUs, 1 a run), in queue order
    assert [(d / runs.LAUNCHER_FILE).is_file() for d in dirs] == [True, True, False, False]
    # nothing but the runs themselves moves the queue on: each dispatches the next as it ends
    wait_for(lambda: all(_status(d) == Status.FINISHED for d in dirs), "the 4 runs of the sweep to finish", 200)
    jobs = wait_for(lambda: _ended_jobs(cluster, dirs), "the 4 jobs to end SUCCEEDED", 60)
    mine = [jobs[d.name] for d in dirs]
    assert len({j.driver_node_id for j in mine}) == 2, "the runs were placed on both nodes"
    marks = []
    for d in dirs:  # each run's training process: from its start line to its final line
        lines = [json.loads(x) for x in (d / runs.METRICS_FILE).read_text().splitlines()]
        marks += [(next(x["t"] for x in lines if x["kind"] == "start"), 1), (lines[-1]["t"], -1)]
    level = peak = 0
    for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
        level += step
        peak = max(peak, level)
    assert peak <= 2, "never more training at once than the cluster's 2 CPUs"
    from cnnviz.runs.executor import executor_of

    rec = read_launcher(dirs[0])
    assert executor_of(rec).node_of(rec, dirs[0]) and read_launcher(dirs[0])["node_id"] == mine[0].driver_node_id
    at = open_page("runs", clean=True)
    assert at.selectbox(key="runs_sweep").value == sweep["sweep_id"]
    table = next(d.value for d in at.dataframe if "best" in d.value.columns)
    assert list(table["status"]).count("finished") == 4


def _gated(root: Path, gate: int, epochs: int = 2) -> Path:
    d = queue.submit(TrainConfig(**{**TINY, "limit_train": 128, "epochs": epochs}), root, dispatch_now=False)
    (d / runs.GATE_FILE).write_text(str(gate))
    queue.dispatch(root)
    return d


def test_sigkill_is_interrupted_and_resumes_on_the_cluster_and_stop_gives_stopped(on_ray, cluster):
    root = on_ray
    d = _gated(root, 5)  # 4 steps an epoch: it holds after epoch 1 (checkpointed), at step 5
    wait_for(lambda: (read_run(d).last_step or {}).get("step") == 5 and (d / runs.LAST_STATE).is_file(),
             "the run to hold at step 5, after epoch 1's checkpoint, on the cluster", 120)
    wait_for(lambda: read_pid(d), "the run's pid file")
    os.kill(read_pid(d)[0], signal.SIGKILL)
    wait_for(lambda: _status(d) == Status.INTERRUPTED, "the killed run to show interrupted", 60)
    snap = summary(d)
    assert "Ray job" in snap.reason and snap.epochs_done == 1
    (d / runs.GATE_FILE).unlink()
    queue.submit(TrainConfig.from_dict(snap.config), root, resume_run_dir=d)
    _wait_status(d, Status.FINISHED, "the resumed run to finish on the cluster")
    assert read_run(d).epochs_done == 2 and read_launcher(d)["job_id"] == f"{d.name}-2"

    s = _gated(root, 2)
    wait_for(lambda: (read_run(s).last_step or {}).get("step") == 2, "the second run to reach step 2", 120)
    request_stop(s)
    wait_for(lambda: _status(s) == Status.STOPPED, "the stopped run to show stopped", 60)
    assert (s / runs.LAST_WEIGHTS).is_file() and (s / runs.LAST_STATE).is_file()


def test_a_restarted_server_shows_the_same_runs_live(on_ray, cluster):
    root = on_ray
    d = _gated(root, 1, epochs=1)
    wait_for(lambda: _status(d) == Status.RUNNING, "the run to train on the cluster", 120)
    # a new server process: it knows only the runs folder and Ray
    out = _cli("runs", "--json", CNNVIZ_RUNS=str(root))
    assert out.returncode == 0, out.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(out.stdout)] == [(d.name, "running")]
    at = open_page("training", clean=True)
    assert any(d.name in m.value and "running" in m.value for m in at.markdown)
    assert any(f"Ray job `{d.name}` · node" in c.value for c in at.caption)
    assert any("Ray cluster at" in e.label and "2 node(s)" in e.label for e in at.expander)
    (d / runs.GATE_FILE).unlink()
    wait_for(lambda: _status(d) == Status.FINISHED, "the run to finish", 120)


def test_a_wrong_ray_address_is_one_line_and_nothing_queued_is_lost(runs_root, monkeypatch):  # noqa: F811
    wrong = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CNNVIZ_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", wrong)
    out = _cli("train", "--queue", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()])
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: the Ray cluster at {wrong} did not answer"), out.stderr
    (entry,) = queue.entries(runs_root)
    assert _status(entry.run_dir) == Status.QUEUED
    at = open_page("training")
    assert [e.value for e in at.error] == [next(e.value for e in at.error)]
    assert f"the Ray cluster at {wrong} did not answer" in at.error[0].value
    assert _status(entry.run_dir) == Status.QUEUED and queue.entries(runs_root)
    monkeypatch.delenv("CNNVIZ_EXECUTOR")  # back to this machine: the same entry starts here
    assert queue.dispatch(runs_root) == [entry.run_dir]
    wait_for(lambda: _status(entry.run_dir) == Status.FINISHED, "the run to finish on this machine", 120)


def test_a_hung_run_is_ended_by_stop_job_after_the_grace_period(on_ray, cluster, monkeypatch):
    """Stop writes the stop file; a run that cannot act on it (here: its process frozen with SIGSTOP, as a
    run hung in I/O would be) is ended by Ray's stop_job once the stop file is older than the grace
    period, by the next dispatch pass, and shows "stopped"; before the grace nothing is ended."""
    root = on_ray
    monkeypatch.setenv("CNNVIZ_RAY_STOP_GRACE_S", "3")
    d = _gated(root, 2)
    wait_for(lambda: (read_run(d).last_step or {}).get("step") == 2 and read_pid(d), "the run to hold at step 2", 120)
    job_id = read_launcher(d)["job_id"]
    os.kill(read_pid(d)[0], signal.SIGSTOP)  # frozen: it will never read the stop file
    request_stop(d)
    assert queue.enforce_stops(root) == []  # inside the grace period: the job is left alone
    assert str(_jobs(cluster)[job_id].status.value) == "RUNNING"
    wait_for(lambda: queue.enforce_stops(root) == [d] or None, "the grace period to pass and stop_job to be sent", 30)
    wait_for(lambda: str(_jobs(cluster)[job_id].status.value) == "STOPPED", "Ray to end the job", 60)
    _wait_status(d, Status.STOPPED, "the run to show stopped", 60)
    assert "stop_job" in summary(d).reason and "3 s grace" in summary(d).reason


def test_a_cluster_that_goes_away_is_one_line_and_nothing_is_lost(runs_root, monkeypatch):  # noqa: F811
    """A one-node cluster of this test's own ends while a run trains on it and another waits in the
    queue: submitting is one line in the CLI (exit 2) and on the page; the queued entry stays queued; the
    run on it is not marked failed while the cluster cannot be asked."""
    monkeypatch.setenv("CNNVIZ_EXECUTOR", "ray")
    monkeypatch.delenv("CNNVIZ_MAX_RUNS", raising=False)
    with RayCluster(cpus=(1,)) as gone:
        monkeypatch.setenv("RAY_ADDRESS", gone.address)
        held = _gated(runs_root, 2)
        wait_for(lambda: (read_run(held).last_step or {}).get("step") == 2, "the run to hold at step 2", 120)
        waiting = queue.submit(TrainConfig(**{**TINY, "seed": 1}), runs_root)  # 1 CPU, taken: it waits
        assert _status(waiting) == Status.QUEUED
    kill_runs_under(runs_root)  # the held run's process, if it outlived its node
    out = _cli("train", "--queue", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()])
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1, out.stderr
    assert err[0].startswith(f"error: the Ray cluster at {gone.address} did not answer"), out.stderr
    at = open_page("training")
    assert len(at.error) == 1 and f"the Ray cluster at {gone.address} did not answer" in at.error[0].value
    assert waiting in [e.run_dir for e in queue.entries(runs_root)] and _status(waiting) == Status.QUEUED
    assert _status(held) not in (Status.ERROR, Status.FINISHED)  # not judged while the cluster is away
