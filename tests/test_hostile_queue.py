"""A queue that cannot wedge, and limits no visitor can go past (issue: hardening).

- malformed queue files (null, [], garbage, a run directory outside the runs root) are set aside with
  the reason; listing, dispatch and the pages go on;
- a launch that fails ends that run as "error" with the reason (it can be deleted), the next one starts;
- a sweep is queued all or nothing; per-visitor limits refuse in one line and queue nothing;
- a run process over its memory limit ends as "error: out of memory" and the queue moves on.
"""

from __future__ import annotations

import json
import os

import pytest

from cnnviz import runs
from cnnviz.runs import Status, queue, sweeps
from cnnviz.runs.quotas import LimitError, Limits
from cnnviz.train import TrainConfig

from .runtools import runs_root, wait_for  # noqa: F401  (fixture)

TINY = dict(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu", limit_train=64, limit_test=32)


@pytest.mark.parametrize("content", [b"null", b"[]", b"{not json", b'{"run_dir": 7}', b'{"run_dir": "/etc"}',
                                     b'{"run_dir": "RUNS/../elsewhere"}', b'{"run_dir": "RUNS/x", "nproc": "lots"}'])
def test_a_malformed_queue_file_is_set_aside_and_the_rest_moves_on(runs_root, content):  # noqa: F811
    good = queue.submit(TrainConfig(**TINY), runs_root, dispatch_now=False)
    bad = runs_root / ".queue" / "00000000000000000000-bad.json"
    bad.write_bytes(content.replace(b"RUNS", str(runs_root).encode()))
    assert [e.run_dir.name for e in queue.entries(runs_root)] == [good.name]
    assert not bad.exists()
    aside = runs_root / ".queue" / "rejected" / bad.name
    assert aside.read_bytes() == content.replace(b"RUNS", str(runs_root).encode())
    assert (aside.parent / (bad.name + ".why")).read_text().strip()
    assert [s.run_id for s in runs.list_runs(runs_root)] == [good.name]
    assert queue.dispatch(runs_root) == [good]
    wait_for(lambda: runs.summary(good).status == Status.FINISHED, "the good run to finish")


def test_run_directories_outside_the_root_are_refused_at_submit(runs_root, tmp_path):  # noqa: F811
    elsewhere = tmp_path / "elsewhere" / "r"
    elsewhere.mkdir(parents=True)
    (elsewhere / "config.json").write_text(json.dumps(TrainConfig(**TINY).to_dict()))
    with pytest.raises(ValueError, match="not a run under the runs folder"):
        queue.submit(TrainConfig(**TINY), runs_root, resume_run_dir=elsewhere)
    assert queue.entries(runs_root) == []


def test_a_launch_that_fails_ends_that_run_as_error_and_the_next_one_starts(runs_root):  # noqa: F811
    doomed = queue.submit(TrainConfig(**TINY), runs_root, dispatch_now=False)
    (doomed / runs.LOG_FILE).mkdir()  # its log cannot be opened: the executor cannot start it
    nxt = queue.submit(TrainConfig(**{**TINY, "seed": 1}), runs_root, dispatch_now=False)
    started = queue.dispatch(runs_root)
    assert started == [nxt]
    snap = runs.summary(doomed)
    assert snap.status == Status.ERROR and "could not be started" in snap.reason and "Is a directory" in snap.reason
    assert snap.error == snap.reason
    wait_for(lambda: runs.summary(nxt).status == Status.FINISHED, "the next run to finish")
    (doomed / runs.LOG_FILE).rmdir()
    runs.delete_run(doomed)  # an errored run can be deleted
    assert not doomed.exists()


def test_an_unknown_executor_is_a_launch_error_not_a_wedge(runs_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CNNVIZ_EXECUTOR", "nonsense")
    d = queue.submit(TrainConfig(**TINY), runs_root)
    snap = runs.summary(d)
    assert snap.status == Status.ERROR and "CNNVIZ_EXECUTOR='nonsense'" in snap.reason
    assert queue.entries(runs_root) == []


def test_a_sweep_is_queued_all_or_nothing(runs_root, monkeypatch):  # noqa: F811
    calls = {"n": 0}
    real = queue._prepare

    def failing(*a, **kw):  # the third run directory cannot be written (a full disk)
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(queue, "_prepare", failing)
    with pytest.raises(OSError, match="No space left"):
        sweeps.submit_grid({"lr": "1e-3,1e-2", "batch_size": "32,64"}, base=TINY, root=runs_root)
    assert queue.entries(runs_root) == [] and runs.run_dirs(runs_root) == []


def test_per_visitor_limits_refuse_in_one_line_and_queue_nothing(runs_root):  # noqa: F811
    lim = Limits(max_queued=2, max_epochs=5, max_sweep_runs=3, max_train_images=1000)
    with pytest.raises(LimitError, match=r"^6 epochs is over this server's limit of 5 per run \(CNNVIZ_MAX_EPOCHS\)"):
        queue.submit(TrainConfig(**{**TINY, "epochs": 6}), runs_root, visitor="v1", limits=lim, dispatch_now=False)
    with pytest.raises(LimitError, match="CNNVIZ_MAX_TRAIN_IMAGES"):
        queue.submit(TrainConfig(**{**TINY, "limit_train": None}), runs_root, visitor="v1", limits=lim,
                     dispatch_now=False)  # shapes: 20,000 images
    with pytest.raises(LimitError, match="one sweep may hold 3 here"):
        sweeps.submit_grid({"lr": "1e-3,1e-2", "batch_size": "32,64"}, base=TINY, root=runs_root, visitor="v1",
                           limits=lim)
    assert runs.run_dirs(runs_root) == []
    for seed in (0, 1):
        queue.submit(TrainConfig(**{**TINY, "seed": seed}), runs_root, visitor="v1", limits=lim, dispatch_now=False)
    with pytest.raises(LimitError, match="You have 2 run"):
        queue.submit(TrainConfig(**TINY), runs_root, visitor="v1", limits=lim, dispatch_now=False)
    queue.submit(TrainConfig(**TINY), runs_root, visitor="v2", limits=lim, dispatch_now=False)  # another visitor
    assert len(queue.entries(runs_root)) == 3
    for e in queue.entries(runs_root):
        queue.cancel(e.run_dir)


def test_a_bad_limit_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_EPOCHS", "lots")
    with pytest.raises(LimitError, match="CNNVIZ_MAX_EPOCHS must be a whole number"):
        Limits.from_env()


@pytest.mark.slow
def test_a_run_over_its_memory_limit_ends_as_out_of_memory_and_the_next_starts(runs_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CNNVIZ_RUN_MEMORY_MB", "4600")  # importing torch and training a tiny run needs ~3.9 GB of
    hog = queue.submit(TrainConfig(model="resnet_small", dataset="shapes", epochs=1, batch_size=4096,  # address space
                                   device="cpu", limit_train=4096, limit_test=32), runs_root)
    small = queue.submit(TrainConfig(**TINY), runs_root)
    assert queue.position(small) == 1
    wait_for(lambda: runs.summary(small).status == Status.FINISHED, "the next run to start and finish")
    snap = runs.snapshot(hog)
    assert snap.status == Status.ERROR
    assert snap.error.startswith("out of memory") and "4,600 MB" in snap.error and "CNNVIZ_RUN_MEMORY_MB" in snap.error
    launched = json.loads((hog / runs.LAUNCHER_FILE).read_text())
    assert launched["memory_limit"] == 4600 * 2**20
    with open(f"/proc/{os.getpid()}/status") as f:  # this process (the server's part) never held the hog's memory
        rss_mb = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
    assert rss_mb < 3000


@pytest.mark.parametrize("by_server", [True, False])
def test_a_run_keeps_openmps_default_wait_policy_unless_the_user_set_one(runs_root, monkeypatch, by_server):  # noqa: F811
    """app.py makes the server's OpenMP threads passive; a run process started from it must not
    inherit that (a training run alone on its cores trains faster with spinning threads), but a
    policy the user set themselves reaches the run."""
    from cnnviz.runs.executor import LocalExecutor

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    if by_server:
        monkeypatch.setenv("CNNVIZ_SERVER_OMP_PASSIVE", "1")
    else:
        monkeypatch.delenv("CNNVIZ_SERVER_OMP_PASSIVE", raising=False)
    run_dir = runs_root / "env-probe"
    run_dir.mkdir()
    code = "import os; print('policy', os.environ.get('OMP_WAIT_POLICY'), os.environ.get('CNNVIZ_SERVER_OMP_PASSIVE'))"
    ex = LocalExecutor()
    record = ex.start(run_dir, ["-c", code])
    wait_for(lambda: not ex.alive(run_dir, record), "the probe process to end")
    line = next(ln for ln in (run_dir / runs.LOG_FILE).read_text().splitlines() if ln.startswith("policy"))
    assert line == ("policy None None" if by_server else "policy PASSIVE None")


@pytest.mark.parametrize("slots, users, expected", [("1", None, None), ("2", None, str(max(1, (os.cpu_count() or 1) // 2))),
                                                    ("2", "3", "3")])
def test_runs_at_once_share_the_cores_out(runs_root, monkeypatch, slots, users, expected):  # noqa: F811
    """With several runs at once on this machine each run gets its share of the cores as
    OMP_NUM_THREADS (every run taking every core made their threads spin against each other);
    one run at a time keeps torch's default; a user's own OMP_NUM_THREADS wins."""
    from cnnviz.runs.executor import LocalExecutor

    monkeypatch.setenv("CNNVIZ_MAX_RUNS", slots)
    if users is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", users)
    run_dir = runs_root / "threads-probe"
    run_dir.mkdir()
    ex = LocalExecutor()
    record = ex.start(run_dir, ["-c", "import os; print('threads', os.environ.get('OMP_NUM_THREADS'))"])
    wait_for(lambda: not ex.alive(run_dir, record), "the probe process to end")
    line = next(ln for ln in (run_dir / runs.LOG_FILE).read_text().splitlines() if ln.startswith("threads"))
    assert line == f"threads {expected}"
