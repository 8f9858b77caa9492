"""Search sweeps (cnnviz.runs.search): Optuna's sampler asks each trial, its pruner stops runs that are behind,
every trial is an ordinary run through the queue, and the study lives in a journal any process can pick up.

The runs drive the search themselves (each trial's process advances it at each epoch end and as it exits,
and the test advances it too, as a page would); where a trial must hold still, a blocker run keeps the
single slot busy and a gate file holds the trial at a step. Nothing sleeps a fixed time and then counts.

The trials train on `digits`, not `shapes`: LeNet5 on 128 shapes images learns nothing in 3 epochs
(measured 10-16% test accuracy at any lr, chance is 10%), so a pruning decision there would be noise;
on digits a usable lr reaches ~45-50% after one epoch and lr 1e-6 stays at ~16%.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnnviz import cli, runs
from cnnviz.runs import liveness, queue, search
from cnnviz.train import TrainConfig

from .runtools import runs_root, wait_for  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
TINY = dict(model="lenet5", dataset="digits", epochs=3, batch_size=32, device="cpu", limit_train=128,
            limit_test=256, seed=0)


def _run(root: Path, run_id: str | None) -> runs.RunSnapshot:
    return runs.read_run(root / run_id)


def _blocker(root: Path) -> Path:
    """A run that takes the only slot and holds before its first step (until it is stopped)."""
    d = queue.submit(TrainConfig(**{**TINY, "epochs": 1}), root, dispatch_now=False)
    (d / runs.GATE_FILE).write_text("0")
    queue.dispatch(root)
    # running: its start line is written, so a stop asked from now on is not cleared by its start
    wait_for(lambda: runs.summary(d).status == "running", "the blocker run to take the slot")
    return d


def _trial_dir(root: Path, sweep_id: str, number: int) -> Path | None:
    for d in runs.run_dirs(root):
        sw = json.loads((d / runs.SWEEP_FILE).read_text()) if (d / runs.SWEEP_FILE).is_file() else {}
        if sw.get("sweep_id") == sweep_id and sw.get("trial") == number:
            return d
    return None


def test_six_trial_tpe_search_prunes_the_hopeless_trial_and_its_best_trial_is_the_best_run(runs_root):
    root = runs_root
    sid = search.create({"lr": "1e-6:3e-2:log"}, base=TINY, sampler="tpe", trials=6, parallel=1,
                        pruner="median", prune_startup=2, seed=0,
                        enqueue=[{"lr": 3e-3}, {"lr": 1e-2}, {"lr": 1e-6}])  # the third: an absurd lr
    st = wait_for(lambda: (lambda s: s if s.complete else None)(
        (search.advance(sid, root), search.state(sid, root))[1]), "the search to complete", timeout=900,
        every=1.0)
    assert len(st.trials) == 6 and all(t.run_id for t in st.trials)
    by_number = {t.number: t for t in st.trials}
    assert [by_number[i].params["lr"] for i in range(3)] == [3e-3, 1e-2, 1e-6]
    for t in st.trials:
        run = _run(root, t.run_id)
        assert run.sweep["sweep_id"] == sid and run.sweep["trial"] == t.number and run.sweep["search"] is True
        assert run.config["lr"] == pytest.approx(t.params["lr"])
        assert 1e-6 <= t.params["lr"] <= 3e-2
        # the study holds the run's epoch scores, and its state matches the run's status
        assert t.scores == {e["epoch"]: pytest.approx(e["test_acc"]) for e in run.epochs}
        assert (t.state, str(run.status)) in (("complete", "finished"), ("pruned", "pruned")), (t, run.status)
    absurd = by_number[2]
    assert absurd.state == "pruned" and absurd.pruned_at == 1 and absurd.run_status == "pruned"
    pruned_run = _run(root, absurd.run_id)
    assert pruned_run.epochs_done == 1 and "Pruned by the search after epoch 1" in pruned_run.final["message"]
    assert pruned_run.last_checkpoint is not None  # pruned with a checkpoint: resumable
    # its epoch-1 accuracy is below the median of the two completed trials' at epoch 1: why it was pruned
    assert absurd.scores[1] < min(by_number[0].scores[1], by_number[1].scores[1])
    finished = [r for r in (_run(root, t.run_id) for t in st.trials) if r.status == "finished"]
    best_run = max(finished, key=lambda r: r.test_acc)
    assert st.best.run_id == best_run.run_id and st.best.value == pytest.approx(best_run.test_acc)
    assert st.best.number == search.load_study(sid, root).best_trial.number
    assert search.advance(sid, root).complete and not queue.entries(root)
    # the pruned status is shown as such in the listing and in `runs --json`
    assert {str(r.status) for r in runs.list_runs(root)} <= {"finished", "pruned"}
    imp, why = search.importances(sid, root)
    assert (set(imp) == {"lr"} and why == "") or "importances need" in why


def test_the_same_seed_asks_the_same_first_trials_and_continue_adds_trials(runs_root):
    root = runs_root
    _blocker(root)  # the trials wait in the queue: nothing trains, the sampler alone decides
    space = {"lr": "1e-5:1e-1:log", "batch_size": "16,32,64", "optimizer": "adam,sgd"}
    made = [search.create(space, base=TINY, sampler="tpe", trials=4, parallel=3, seed=s) for s in (7, 7, 8)]
    firsts = [[t.params for t in sorted(search.state(sid, root).trials, key=lambda t: t.number)] for sid in made]
    assert len(firsts[0]) == 3 and firsts[0] == firsts[1] and firsts[0] != firsts[2]
    for sid in made:
        st = search.state(sid, root)
        assert st.in_flight == 3 and not st.complete
        assert all(runs.summary(root / t.run_id).status == "queued" for t in st.trials)
    assert len(queue.entries(root)) == 9  # at most `parallel` queued per search, through the one queue
    assert search.extend(made[0], 2, root) == 6 and search.load_spec(made[0], root)["trials"] == 6
    assert search.state(made[0], root).asked == 3  # still three in flight: the others come as they end


def test_a_killed_server_and_a_sigkilled_trial_the_new_server_continues_from_the_journal(runs_root):
    root = runs_root
    blocker = _blocker(root)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    flags = ["--lr", "1e-3:1e-2:log", "--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--device", "cpu",
             "--limit-train", "128", "--limit-test", "256", "--trials", "3", "--parallel", "1", "--prune", "none"]
    server = subprocess.Popen([sys.executable, "-m", "cnnviz", "sweep", "--search", "random", *flags, "--poll", "0.2"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sid = wait_for(lambda: next(iter(search.search_ids(root)), None), "the search to be made")
        d0 = wait_for(lambda: _trial_dir(root, sid, 0), "trial 0's run")
        (d0 / runs.GATE_FILE).write_text("1")  # it trains one step, then holds
        runs.request_stop(blocker)  # the slot frees: trial 0 starts
        wait_for(lambda: runs.read_run(d0).steps_logged >= 1, "trial 0 to train a step")
        rec = liveness.read_launcher(blocker)  # the blocker's process advances searches as it exits: let it go first
        wait_for(lambda: not liveness.process_alive(int(rec["pid"]), rec.get("start")), "the blocker's process to end")
        server.send_signal(signal.SIGKILL)  # the server dies mid-search ...
        server.wait(timeout=60)
        pid, _ = liveness.read_pid(d0)
        os.kill(pid, signal.SIGKILL)  # ... and so does trial 0's process
        wait_for(lambda: runs.read_run(d0).status == "interrupted", "trial 0 to show interrupted")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=60)
    t0 = search.state(sid, root).trials[0]
    assert t0.state == "running", (t0, server.stdout.read()[-3000:], server.stderr.read()[-3000:])  # nobody told it
    # a new server: the study, its trial 0 and its sampler's place come from the journal
    again = subprocess.run([sys.executable, "-m", "cnnviz", "sweep", "--continue", sid, "--poll", "0.2"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.strip().splitlines()
    st = search.state(sid, root)
    t0 = st.trials[0]
    assert t0.state == "fail" and t0.run_status == "interrupted" and "without writing a final line" in t0.reason
    assert t0.run_id == d0.name and t0.params == json.loads((d0 / runs.SWEEP_FILE).read_text())["params"]
    assert [t.number for t in st.trials] == [0, 1, 2] and st.complete
    assert [t.state for t in st.trials[1:]] == ["complete", "complete"]
    assert any(line.startswith("trial 0: failed (interrupted") for line in lines)
    assert sum(line.startswith(("trial 1: finished", "trial 2: finished")) for line in lines) == 2
    summary = json.loads(lines[-1])
    assert summary["sweep_id"] == sid and summary["complete"] == 2 and summary["fail"] == 1
    assert summary["best"]["run_id"] == st.best.run_id
    assert search.journal_path(sid, root).is_file()


@pytest.mark.parametrize("argv, message", [
    (["--search", "tpe", "--lr", "1e-1:1e-4"], "lr: the range 1e-1:1e-4 has its low end above its high end."),
    (["--search", "tpe", "--lr", "0:1e-1:log"], "lr: a log range needs a low end above 0, not 0."),
    (["--search", "tpe", "--lr", "1e-4:1e-1:log", "--trials", "10000"], "trials must be in 1..1,000, not 10,000."),
    (["--search", "tpe", "--lr", "1e-3"], "A search needs at least one range"),
    (["--search", "tpe", "--lr", "1e-4:1e-1", "--optimizer", "adam,rmsprop"], "optimizer must be one of"),
    (["--search", "tpe", "--lr", "1e-9:1e-1:log"], "lr: 1e-9 is below the lowest lr, 1e-08."),
    (["--search", "tpe", "--batch-size", "16:64.5"], "not a whole number"),
    (["--search", "tpe", "--device", "cpu,cuda"], "device can't be searched"),
    (["--trials", "5", "--lr", "1e-3,1e-2"], "--trials go(es) with --search"),
    (["--continue", "search-nope"], "No search 'search-nope'"),
    (["--continue", "search-nope", "--lr", "1e-3"], "--continue takes no settings"),
])
def test_bad_search_input_is_one_line_and_queues_nothing(runs_root, capsys, argv, message):
    settings = [] if "--continue" in argv else ["--dataset", "digits", "--device", "cpu"]
    rc = cli.main(["sweep", *settings, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not any(runs_root.iterdir())  # no run, no queue file, no study


def test_an_unknown_setting_is_refused(runs_root, capsys):
    with pytest.raises(ValueError, match=r"^Unknown setting 'colour'; searchable: model, dataset"):
        search.create({"colour": "red,blue", "lr": "1e-3:1e-2"}, base=TINY)
    with pytest.raises(SystemExit) as exc:  # the CLI's flags come from TrainConfig: argparse refuses it
        cli.main(["sweep", "--search", "tpe", "--colour", "red,blue"])
    assert exc.value.code == 2 and "unrecognized arguments: --colour" in capsys.readouterr().err
    with pytest.raises(ValueError, match="inside the search space"):
        search.create({"lr": "1e-3:1e-2"}, base=TINY, enqueue=[{"lr": 1.0}])
    assert not any(runs_root.iterdir())


def test_the_study_goes_to_the_database_named_by_the_environment(runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv(search.STORAGE_ENV, f"sqlite:///{tmp_path / 'studies.db'}")
    sid = search.create({"lr": "1e-4:1e-1:log", "optimizer": "adam,sgd"}, base=TINY, trials=2, start=False)
    assert search.load_spec(sid, runs_root)["storage"] == "database"
    assert not search.journal_path(sid, runs_root).exists() and (tmp_path / "studies.db").is_file()
    study = search.load_study(sid, runs_root)
    assert study.study_name == sid and study.direction.name == "MAXIMIZE"
    monkeypatch.delenv(search.STORAGE_ENV)
    with pytest.raises(ValueError, match=f"in the database named by {search.STORAGE_ENV}, which is not set here"):
        search.load_study(sid, runs_root)


def _fake_trials(root: Path, sid: str, trials: list[tuple[dict, list[float], str | None]]) -> list[Path]:
    """Ask one trial per entry and write its run as its process would have: epoch lines with these test
    accuracies, then a final line with this status (None: still training, a live sleeper as its process)."""
    from .runtools import fake_run, sleeper

    study = search.load_study(sid, root)
    dims = {n: d.distribution() for n, d in search.dimensions(search.load_spec(sid, root)).items()}
    dirs = []
    for i, (params, accs, end) in enumerate(trials):
        trial = study.ask(fixed_distributions=dims)
        lines = [{"kind": "start"}] + [{"kind": "epoch", "epoch": e, "test_acc": a} for e, a in enumerate(accs, 1)]
        lines += [{"kind": "done", "status": end}] if end else []
        d = fake_run(root, f"20261201-1200{i:02d}-lenet5-digits-{i:016x}", lines,
                     TrainConfig(**{**TINY, **params}).to_dict(), pid=None if end else sleeper())
        (d / runs.SWEEP_FILE).write_text(json.dumps({"sweep_id": sid, "params": params, "trial": i, "search": True}))
        trial.set_user_attr("run_id", d.name)
        dirs.append(d)
    return dirs


@pytest.mark.parametrize("pruner", ["median", "asha", "hyperband", "none"])
def test_each_pruner_stops_a_live_trial_that_is_behind_through_its_stop_file(runs_root, pruner):
    sid = search.create({"lr": "1e-5:1e-1:log"}, base={**TINY, "epochs": 2}, trials=2, pruner=pruner,
                        prune_startup=1, enqueue=[{"lr": 1e-3}, {"lr": 1e-5}], start=False)
    done, behind = _fake_trials(runs_root, sid, [({"lr": 1e-3}, [0.9, 0.95], "finished"), ({"lr": 1e-5}, [0.1], None)])
    out = search.advance(sid, runs_root)
    assert out.told == [(0, "complete")] and not out.asked
    if pruner == "none":
        assert out.pruning == [] and not (behind / runs.STOP_FILE).exists()
        return
    assert out.pruning == [(1, 1)] and (behind / runs.STOP_FILE).read_text() == "prune\n"
    assert runs.layout.stop_reason(behind) == runs.layout.PRUNE
    assert search.advance(sid, runs_root).pruning == []  # asked once: advance is idempotent
    t1 = search.state(sid, runs_root).trials[1]
    assert t1.state == "running" and t1.pruned_at == 1 and t1.scores == {1: 0.1}


def test_how_each_way_a_run_ends_is_told_to_the_study(runs_root):
    ends = [("finished", [0.5, 0.6]), ("pruned", [0.2]), ("stopped", [0.3]), ("diverged", [0.4]),
            ("diverged", []), ("error", [])]
    sid = search.create({"lr": "1e-7:1:log"}, base={**TINY, "epochs": 2}, trials=len(ends) + 1, start=False,
                        enqueue=[{"lr": 10 ** -(i + 1)} for i in range(len(ends))])
    dirs = _fake_trials(runs_root, sid, [({"lr": 10 ** -(i + 1)}, accs, end) for i, (end, accs) in enumerate(ends)])
    study = search.load_study(sid, runs_root)
    killed = study.ask(fixed_distributions={"lr": search.dimensions(search.load_spec(sid, runs_root))["lr"]
                                            .distribution()})  # asked, but its run was never made (a crash)
    out = search.advance(sid, runs_root, wait=True)
    assert sorted(out.told) == [(0, "complete"), (1, "pruned"), (2, "pruned"), (3, "pruned"), (4, "fail"),
                                (5, "fail"), (killed.number, "fail")]
    st = search.state(sid, runs_root)
    assert st.trials[0].value == 0.6 and st.best.number == 0 and st.complete
    assert [t.run_status for t in st.trials[:6]] == [e for e, _ in ends]
    assert st.trials[killed.number].reason == "its run was deleted or never made"
    assert all(t.run_id == d.name for t, d in zip(st.trials, dirs))
