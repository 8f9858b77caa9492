"""Background jobs: two at once, stop, snapshots, reattach through the registry, step gates,
stop_all and forget. A test that looks at a running job holds it at a StepGate, so what it sees
does not depend on the machine's speed; waits for an end have long caps, never a measure."""

from __future__ import annotations

import pytest

from cnnviz.train import jobs, runs
from cnnviz.train import TrainConfig


def tiny(**kw) -> TrainConfig:
    base = dict(model="lenet5", dataset="shapes", batch_size=64, epochs=1, device="cpu", seed=0,
                limit_train=512, limit_test=256)
    return TrainConfig(**{**base, **kw})


def wait(job, timeout=300):
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
    gate = jobs.StepGate(3)
    job = jobs.start_job(tiny(epochs=50, limit_train=1024), runs_root=tmp_path, gate=gate)
    assert gate.wait_held() == 3
    snap = job.snapshot()
    assert len(snap["steps"]) == 3
    assert snap["status"] == "running" and 0 < snap["progress"] < 1 and snap["alive"]
    assert snap["eta_s"] is None or snap["eta_s"] > 0
    assert "MiB" in snap["memory"]
    snap["steps"].append({"mutated": True})  # a copy: the job's own list is untouched
    assert {"mutated": True} not in job.snapshot()["steps"]
    job.stop()  # a held job is let go to stop
    final = wait(job)
    assert final["status"] == "stopped" and len(final["steps"]) == 3
    assert runs.load_run(job.run_dir).last_checkpoint is not None


def test_a_gate_lets_a_job_log_only_the_steps_allowed(tmp_path):
    gate = jobs.StepGate()
    job = jobs.start_job(tiny(), runs_root=tmp_path, gate=gate)  # 8 steps in all
    assert gate.wait_held() == 0  # held after its start, before any step
    assert job.snapshot()["status"] == "running" and job.snapshot()["steps"] == []
    gate.allow(2)
    assert gate.wait_held() == 2 and [s["step"] for s in job.snapshot()["steps"]] == [1, 2]
    assert job.is_alive()
    with pytest.raises(ValueError, match="one gate per job"):
        jobs.start_job(tiny(), runs_root=tmp_path, gate=gate)
    gate.open()
    snap = wait(job)
    assert snap["status"] == "finished" and len(snap["steps"]) == 8 and gate.logged == 8
    with pytest.raises(RuntimeError, match="ended"):
        gate.wait_held(timeout=1)


def test_a_gate_never_holds_a_job_that_ends_in_an_error(tmp_path):
    gate = jobs.StepGate()
    job = jobs.start_job(tiny(dataset="mnist-that-does-not-exist"), runs_root=tmp_path, gate=gate)
    with pytest.raises(RuntimeError, match="ended after 0 logged steps"):
        gate.wait_held()
    assert wait(job)["status"] == "error"


def test_stop_all_ends_every_job_and_forget_drops_the_ended_ones(tmp_path):
    gates = [jobs.StepGate(1), jobs.StepGate(2)]
    a, b = (jobs.start_job(tiny(epochs=50, seed=i), runs_root=tmp_path, gate=g) for i, g in enumerate(gates))
    assert [g.wait_held() for g in gates] == [1, 2]
    assert jobs.forget() == [] and set(jobs.list_jobs()) == {a, b}  # running jobs are never dropped
    assert jobs.stop_all(timeout=300) == []
    assert not a.is_alive() and not b.is_alive()
    assert a.snapshot()["status"] == b.snapshot()["status"] == "stopped"
    assert set(jobs.forget([a.run_id])) == {a.run_id}
    assert jobs.get_job(a.run_id) is None and jobs.get_job(b.run_id) is b
    assert b.run_id in jobs.forget()
    assert jobs.get_job(b.run_id) is None and not {a, b} & set(jobs.list_jobs())
    assert (tmp_path / a.run_id).is_dir() and runs.load_run(tmp_path / b.run_id).status == "stopped"  # files stay


def test_list_jobs_of_one_runs_folder(tmp_path):
    a = jobs.start_job(tiny(), runs_root=tmp_path / "one")
    b = jobs.start_job(tiny(seed=1), runs_root=tmp_path / "two")
    wait(a), wait(b)
    assert a in jobs.list_jobs(tmp_path / "one") and b not in jobs.list_jobs(tmp_path / "one")
    assert jobs.list_jobs(tmp_path / "two") == [b] and {a, b} <= set(jobs.list_jobs())


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
