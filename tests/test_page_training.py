"""AppTest of pages/training.py. Runs are processes that the page reads from their directories:

- Start queues a run that trains in its own process and streams to the end; with one slot a second
  run waits in the queue with its position and can be cancelled; Stop ends a run with a checkpoint;
- an interrupted run (its process killed) says why, shows its log and resumes from its checkpoint;
- live views are checked on run directories written by the test (a live "trainer" is a sleeping
  process): status and charts follow every line appended to its metrics.

Each test has its own runs folder; every process a test started is killed when it ends. Waits are
for conditions on the run directories, never fixed sleeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnviz.train import TrainConfig, fit
from cnnviz import runs
from cnnviz.runs import liveness
from cnnviz.runs import queue

from .pagetest import open_page, page_path
from .runtools import append, fake_run, runs_root, sleeper, wait_for  # noqa: F401  (fixture)

PAGE = page_path("training")


@pytest.fixture(autouse=True)
def _own_runs(runs_root):  # noqa: F811
    return runs_root


def _page() -> AppTest:
    return open_page(PAGE, timeout=60)


def _tiny(at: AppTest, **kw) -> None:
    """Preset the form (a form's widgets only take effect on submit, like a user's typing)."""
    vals = {"train_model": "lenet5", "train_dataset": "shapes", "train_epochs": 1, "train_batch_size": 32,
            "train_device": "cpu", "train_limit_train": 192, "train_limit_test": 64, **kw}
    for k, v in vals.items():
        at.session_state[k] = v


def _not_started(at: AppTest) -> list[str]:
    return [e.value for e in at.error if "Not started" in e.value]


def _start(at: AppTest) -> Path:
    before = {d.name for d in runs.run_dirs()}
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert not _not_started(at)
    new = [d for d in runs.run_dirs() if d.name not in before]
    assert len(new) == 1, "Start should queue exactly one run"
    return new[0]


def _header(at: AppTest, rid: str) -> str:
    heads = [m.value for m in at.markdown if rid in m.value and m.value.startswith("####")]
    return heads[0] if heads else ""


def _status(d: Path) -> str:
    return runs.read_run(d).status


def test_page_renders_the_form_and_trains_nothing(runs_root):  # noqa: F811
    at = _page()
    assert at.button(key="train_start") is not None
    assert "lenet5 (LeNet)" in at.selectbox(key="train_model").options
    assert "shapes" in at.selectbox(key="train_dataset").options
    assert "auto" in at.selectbox(key="train_device").options
    for key in ("train_sweep_lr", "train_sweep_batch_size", "train_sweep_optimizer", "train_sweep_augment",
                "train_sweep_model"):
        assert at.multiselect(key=key).value == []
    assert runs.run_dirs() == [] and queue.entries() == []
    assert any("No run yet" in i.value for i in at.info)


def test_models_offered_fit_small_inputs():
    opts = _page().selectbox(key="train_model").options
    names = [o.split(" (")[0] for o in opts]
    assert {"lenet5", "resnet_small", "resnet18_cifar"} <= set(names)
    assert "resnet50" not in names and "vgg16" not in names


def test_bad_input_is_one_line_and_starts_nothing():
    at = _page()
    _tiny(at, train_dataset="folder or zip (path below)", train_path="/no/such/folder")
    at.button(key="train_start").click().run()
    assert not at.exception
    errs = _not_started(at)
    assert len(errs) == 1 and "is not inside the folders this server reads" in errs[0] and "\n" not in errs[0]
    assert runs.run_dirs() == []


def test_studio_pipeline_is_offered_when_the_studio_set_one():
    at = open_page(PAGE, timeout=60, state={"augment_pipeline_json": '{"steps": []}'})
    assert "studio pipeline" in at.selectbox(key="train_augment").options


def test_missing_dataset_is_said_before_starting(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "empty-data"))
    at = _page()
    _tiny(at, train_dataset="cifar10")
    at.button(key="train_start").click().run()
    assert not at.exception
    errs = _not_started(at)
    assert len(errs) == 1 and "cifar10" in errs[0].lower()
    assert runs.run_dirs() == []


def test_start_runs_a_process_that_streams_to_finished_with_charts():
    at = _page()
    _tiny(at)
    d = _start(at)
    assert (d / runs.LAUNCHER_FILE).is_file()  # its own process, not a thread of this one
    assert liveness.read_launcher(d)["pid"] != __import__("os").getpid()
    wait_for(lambda: _status(d) == "finished", "the run to finish")
    at.run()
    assert not at.exception
    assert "finished" in _header(at, d.name)
    assert len(at.get("plotly_chart")) == 3  # loss, accuracy, lr + throughput
    caps = [c.value for c in at.caption if "steps logged" in c.value]
    assert caps and "6 steps logged" in caps[0]  # 192 images / 32 per batch
    assert "started: " in (d / runs.LOG_FILE).read_text()


def test_one_slot_queues_the_second_run_which_can_be_cancelled_and_stop_ends_the_first():
    at = _page()
    _tiny(at, train_epochs=200, train_limit_train=128)  # long, within CNNVIZ_MAX_EPOCHS (200)
    first = _start(at)
    second = _start(at)
    wait_for(lambda: _status(first) == "running", "the first run to train")
    at.run()
    assert not at.exception
    assert "queued" in _header(at, second.name) and "running" in _header(at, first.name)
    waiting = [p.proto.text for p in at.get("progress") if "Waiting in the queue" in p.proto.text]
    assert waiting and "position 1" in waiting[0]
    at.button(key=f"train_cancel_{second.name}").click().run()
    assert not at.exception and not second.exists() and queue.entries() == []
    at.button(key=f"train_stop_{first.name}").click().run()
    assert not at.exception
    wait_for(lambda: _status(first) == "stopped", "the first run to stop")
    at.run()
    assert "stopped" in _header(at, first.name)
    assert at.button(key=f"train_delete_{first.name}") is not None


def test_an_interrupted_run_says_why_shows_its_log_and_resumes(runs_root):  # noqa: F811
    d = runs_root / "20261130-120000-lenet5-shapes-dead"
    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=32, device="cpu", limit_train=96,
                      limit_test=32)
    gen = fit(cfg, run_dir=d)
    for ev in gen:  # train until the first epoch's checkpoint, then the "process" dies
        if ev.kind == "checkpoint":
            break
    gen.close()
    gone = sleeper()
    gone.kill()
    gone.wait()
    (d / runs.PID_FILE).write_text(f"{gone.pid} {liveness.process_start_time(__import__('os').getpid())}")
    (d / runs.LOG_FILE).write_text("epoch 1: ...\nKilled\n")
    at = _page()
    assert "interrupted" in _header(at, d.name)
    warn = [w.value for w in at.warning if w.value.startswith("Interrupted")]
    assert warn and f"pid {gone.pid}" in warn[0] and "without writing a final line" in warn[0]
    assert any("Killed" in c.value for c in at.code)
    at.button(key=f"train_resume_{d.name}").click().run()
    assert not at.exception
    wait_for(lambda: _status(d) == "finished", "the resumed run to finish")
    info = runs.read_run(d)
    assert [e["epoch"] for e in info.epochs] == [1, 2]


def test_a_diverged_run_shows_the_message_and_advice(runs_root):  # noqa: F811
    d = fake_run(runs_root, "20261130-120000-lenet5-shapes-nan0", [
        {"kind": "start", "device": "CPU"}, {"kind": "step", "step": 1, "epoch": 1, "loss": 2.3, "progress": 0.1},
        {"kind": "done", "status": "diverged", "message": "The loss became nan at step 3 (epoch 1).",
         "advice": "The loss became NaN/inf: lower the learning rate (now 0.001; try 0.0001)."}])
    at = _page()
    assert "diverged" in _header(at, d.name)
    assert any("loss became" in e.value and "step" in e.value for e in at.error)
    assert any("learning rate" in i.value for i in at.info)


def _loss_captions(at: AppTest, rid: str) -> list[str]:
    return [c.value for c in at.caption if "steps logged" in c.value]


def test_live_view_follows_every_line_in_status_and_charts(runs_root):  # noqa: F811
    trainer = sleeper()
    try:
        d = fake_run(runs_root, "20261130-120000-lenet5-shapes-live",
                     [{"kind": "start", "device": "CPU", "device_type": "cpu"}] +
                     [{"kind": "step", "step": i, "epoch": 1, "loss": 2.3 - i / 100, "lr": 1e-3, "progress": i / 100,
                       "images_per_s": 1000.0, "elapsed_s": float(i)} for i in range(1, 6)],
                     config=TrainConfig(epochs=1, device="cpu").to_dict(), pid=trainer)
        at = open_page(PAGE, timeout=60)
        assert "running" in _header(at, d.name)
        assert any("5 steps logged" in c for c in _loss_captions(at, d.name))
        assert any(m.label == "Loss (last step)" and m.value == "2.250" for m in at.metric)
        progress = [p.proto.text for p in at.get("progress")]
        assert any("step 5" in t for t in progress)
        append(d, [{"kind": "step", "step": i, "epoch": 1, "loss": 2.3 - i / 100, "lr": 1e-3, "progress": i / 100,
                    "images_per_s": 1000.0, "elapsed_s": float(i)} for i in range(6, 21)])
        at.run()
        assert not at.exception
        assert any(m.label == "Loss (last step)" and m.value == "2.100" for m in at.metric)  # the status moved
        assert any("20 steps logged" in c for c in _loss_captions(at, d.name))            # and the charts
        append(d, [{"kind": "epoch", "epoch": 1, "train_loss": 2.2, "train_acc": 0.2, "test_loss": 2.1,
                    "test_acc": 0.25, "progress": 1.0}, {"kind": "done", "status": "finished"}])
        trainer.kill()
        trainer.wait()
        at.run()
        assert not at.exception
        assert "finished" in _header(at, d.name)
        assert any("20 steps logged" in c for c in _loss_captions(at, d.name))
    finally:
        trainer.kill()


def test_the_refresh_choice_sets_the_status_and_chart_periods():
    from ui.live import chart_seconds, describe_refresh, refresh_label, refresh_seconds

    assert refresh_seconds(None) == 1 and chart_seconds(refresh_seconds(None)) == 3  # the default: 1 s and 3 s
    assert refresh_seconds(5) == 5 and chart_seconds(5) == 15
    assert describe_refresh(2) == "status every 2 s, charts every 6 s"
    assert refresh_seconds(0) == 0 and chart_seconds(0) is None and refresh_label(0) == "Paused"  # no polling
    assert describe_refresh(0).startswith("paused")


def test_sweep_boxes_queue_a_grid_that_shares_a_sweep_id(monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "1")
    at = _page()
    _tiny(at, train_epochs=1, train_sweep_lr=[1e-3, 1e-2], train_sweep_batch_size=[32, 64])
    before = set(runs.run_dirs())
    at.button(key="train_start").click().run()
    assert not at.exception and not _not_started(at)
    new = [d for d in runs.run_dirs() if d not in before]
    assert len(new) == 4
    records = [runs.layout.sweep_of(d) for d in new]
    assert len({r["sweep_id"] for r in records}) == 1
    assert sorted((r["params"]["lr"], r["params"]["batch_size"]) for r in records) == [
        (1e-3, 32), (1e-3, 64), (1e-2, 32), (1e-2, 64)]
    assert len(queue.entries()) == 3  # one slot: the first runs, three wait
    for d in new:  # nothing left to run after the test
        queue.cancel(d)


def _ended_run(root: Path, name: str) -> Path:
    return fake_run(root, name, [
        {"kind": "start", "device": "CPU"}, {"kind": "step", "step": 1, "epoch": 1, "loss": 2.3, "progress": 1.0},
        {"kind": "epoch", "epoch": 1, "train_loss": 2.2, "train_acc": 0.2, "test_loss": 2.1, "test_acc": 0.25,
         "progress": 1.0}, {"kind": "done", "status": "finished"}], config=TrainConfig(epochs=1, device="cpu").to_dict())


def test_delete_asks_first_then_yes_deletes_only_that_run_and_cancel_keeps_it(runs_root):  # noqa: F811
    gone = _ended_run(runs_root, "20261130-120000-lenet5-shapes-del0")
    kept = _ended_run(runs_root, "20261130-120001-lenet5-shapes-kep1")
    at = _page()
    assert "finished" in _header(at, gone.name) and "finished" in _header(at, kept.name)
    at.button(key=f"train_delete_{gone.name}").click().run()
    assert not at.exception
    asks = [w.value for w in at.warning if w.value.startswith("Delete run")]
    assert asks == [f"Delete run **{gone.name}** and all its checkpoints? This can't be undone."]
    assert gone.is_dir()  # asking deletes nothing
    at.button(key=f"train_delete_yes_{gone.name}").click().run()
    assert not at.exception and not at.error
    assert not gone.exists() and kept.is_dir()
    assert _header(at, gone.name) == "" and "finished" in _header(at, kept.name)
    assert not [w for w in at.warning if w.value.startswith("Delete run")]
    at.button(key=f"train_delete_{kept.name}").click().run()
    at.button(key=f"train_delete_no_{kept.name}").click().run()
    assert not at.exception and kept.is_dir()
    assert not [w for w in at.warning if w.value.startswith("Delete run")]
    assert at.button(key=f"train_delete_{kept.name}") is not None


def test_the_resume_box_stays_within_the_servers_epoch_limit(runs_root, monkeypatch):  # noqa: F811
    """A run whose config asks for more epochs than this server allows (a CLI run, a lowered limit) must
    not make the page raise (StreamlitValueAboveMaxError): the box is clamped, and a run already at the
    limit says it can't train further."""
    monkeypatch.setenv("CNNVIZ_MAX_EPOCHS", "5")
    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=400, device="cpu").to_dict()

    def epochs(n: int) -> list[dict]:
        return [{"kind": "epoch", "epoch": e, "t": float(e), "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0,
                 "test_acc": 0.5, "images_per_s": 100.0, "elapsed_s": float(e)} for e in range(1, n + 1)]

    below = fake_run(runs_root, "20261130-120000-lenet5-shapes-below", epochs(2), cfg)
    at_cap = fake_run(runs_root, "20261130-120001-lenet5-shapes-atcap",  # finished at the limit
                      epochs(5) + [{"kind": "done", "t": 6.0, "status": "finished", "epochs_done": 5}], cfg)
    for d in (below, at_cap):  # Resume is offered to a run with a checkpoint (only its presence is read here)
        (d / runs.LAST_WEIGHTS).write_bytes(b"")
    at = _page()
    assert not at.exception, at.exception
    box = at.number_input(key=f"train_resume_ep_{below.name}")
    assert box.max == 5 and box.value == 5
    assert f"train_resume_ep_{at_cap.name}" not in [n.key for n in at.number_input]
    assert any("can't train further" in c.value for c in at.caption)
