"""Background jobs: two at once, stop, snapshots, reattach through the registry."""

from __future__ import annotations

import time

import pytest

from cnnviz.train import jobs, runs
from cnnviz.train import TrainConfig


def tiny(**kw) -> TrainConfig:
    base = dict(model="lenet5", dataset="shapes", batch_size=64, epochs=1, device="cpu", seed=0,
                limit_train=512, limit_test=256)
    return TrainConfig(**{**base, **kw})


def wait(job, timeout=120):
    job.join(timeout)
    assert not job.is_alive(), "job did not end in time"
    return job.snapshot()


def test_two_jobs_at_once_both_finish(tmp_path):
    a = jobs.start_job(tiny(epochs=2), runs_root=tmp_path)
    b = jobs.start_job(tiny(seed=1, model="resnet_small", limit_train=256), runs_root=tmp_path)
    assert a.run_id != b.run_id
    assert jobs.get_job(a.run_id) is a and jobs.get_job(b.run_id) is b
    assert {a, b} <= set(jobs.list_jobs())
    sa, sb = wait(a), wait(b)
    assert sa["status"] == sb["status"] == "finished"
    assert [e["epoch"] for e in sa["epochs"]] == [1, 2] and len(sa["steps"]) == 16
    assert sa["progress"] == 1.0 and sa["error"] is None and "CPU" in sa["device"]
    listed = {r.run_id: r for r in runs.list_runs(tmp_path)}
    assert listed[a.run_id].status == "finished" and listed[b.run_id].status == "finished"


def test_snapshot_while_running_and_stop(tmp_path):
    job = jobs.start_job(tiny(epochs=50, limit_train=1024), runs_root=tmp_path)
    deadline = time.time() + 60
    snap = job.snapshot()
    while time.time() < deadline and len(snap["steps"]) < 3:
        time.sleep(0.05)
        snap = job.snapshot()
    assert snap["status"] == "running" and 0 < snap["progress"] < 1
    assert snap["eta_s"] is None or snap["eta_s"] > 0
    assert "MiB" in snap["memory"]
    snap["steps"].append({"mutated": True})  # a copy: the job's own list is untouched
    assert {"mutated": True} not in job.snapshot()["steps"]
    job.stop()
    final = wait(job, 30)
    assert final["status"] == "stopped"
    assert runs.load_run(job.run_dir).last_checkpoint is not None


def test_resume_job_keeps_earlier_curves(tmp_path):
    job = jobs.start_job(tiny(), runs_root=tmp_path)
    wait(job)
    again = jobs.start_job(tiny(epochs=2), resume_run_dir=job.run_dir)
    assert again.run_id == job.run_id and jobs.get_job(job.run_id) is again
    snap = wait(again)
    assert snap["status"] == "finished" and [e["epoch"] for e in snap["epochs"]] == [1, 2]
    assert [s["step"] for s in snap["steps"]] == list(range(1, 17))


def test_bad_config_raises_before_a_thread_starts(tmp_path):
    n = len(jobs.list_jobs())
    with pytest.raises(ValueError, match="lr"):
        jobs.start_job(tiny(lr=-1), runs_root=tmp_path)
    assert len(jobs.list_jobs()) == n


def test_error_in_thread_is_a_status_not_a_crash(tmp_path):
    job = jobs.start_job(tiny(dataset="mnist-that-does-not-exist"), runs_root=tmp_path)
    snap = wait(job)
    assert snap["status"] == "error" and snap["error"] and snap["advice"]


def test_starting_a_job_lowers_the_gil_switch_interval_and_never_raises_it(tmp_path):
    """The server's threads must not hold the GIL for Python's default 5 ms while a run trains."""
    import sys

    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        wait(jobs.start_job(tiny(), runs_root=tmp_path))
        assert sys.getswitchinterval() == pytest.approx(jobs.SWITCH_INTERVAL_S)
        sys.setswitchinterval(jobs.SWITCH_INTERVAL_S / 5)  # already lower: left alone
        wait(jobs.start_job(tiny(seed=1), runs_root=tmp_path))
        assert sys.getswitchinterval() == pytest.approx(jobs.SWITCH_INTERVAL_S / 5)
    finally:
        sys.setswitchinterval(old)
