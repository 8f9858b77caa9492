"""The training engine on tiny data: config validation, schedules, events, stop, resume, NaN, OOM."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch

from cnnviz import train
from cnnviz.train import engine
from cnnviz import runs
from cnnviz.runs.writer import RunWriter
from cnnviz.models.checkpoints import load_checkpoint
from cnnviz.runs.layout import thin_checkpoints
from cnnviz.train import TrainConfig, fit, lr_at


def tiny(**kw) -> TrainConfig:
    base = dict(model="lenet5", dataset="shapes", batch_size=64, epochs=1, device="cpu", seed=0,
                limit_train=512, limit_test=256)
    return TrainConfig(**{**base, **kw})


def events(cfg, tmp_path, name="run", **kw):
    return list(fit(cfg, run_dir=tmp_path / name, **kw))


# ---------------------------------------------------------------------------------- config
def test_config_roundtrip_and_unknown_keys():
    cfg = tiny(optimizer="sgd", nesterov=True, schedule="onecycle")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="Unknown config keys: colour"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": "red"})


@pytest.mark.parametrize("bad, msg", [
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(lr=0), "lr must be"),
    (dict(lr=float("nan")), "lr must be"),
    (dict(batch_size=0), "batch_size"),
    (dict(epochs=1.5), "epochs"),
    (dict(nesterov=True, optimizer="adam"), "nesterov needs"),
    (dict(schedule="step"), "schedule must be"),
    (dict(model="nope"), "Unknown model"),
    (dict(dataset="folder:/no/such/dir"), "does not exist"),
    (dict(precision="fp8"), "precision"),
    (dict(label_smoothing=1.0), "label_smoothing"),
])
def test_validate_rejects_with_clear_message(bad, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(**bad).validate()


def test_presets_are_valid_configs():
    for name in train.PRESETS:
        cfg = train.preset_config(name, device="cpu")
        cfg.validate()  # raises ValueError with the reason if a preset names a bad model, augment or value
    assert train.preset_config("speedrun").model == "airbench"


# ---------------------------------------------------------------------------------- schedules
def _torch_lrs(make_sched, total, base=0.1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base, momentum=0.9)
    sched = make_sched(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_onecycle_matches_torch_onecyclelr():
    total = 50
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=total,
                                                                   cycle_momentum=False), total)
    ours = [lr_at("onecycle", 0.1, s, total) for s in range(total)]
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_cosine_matches_torch_cosineannealing_and_constant_is_constant():
    total = 40
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total), total)
    assert [lr_at("cosine", 0.1, s, total) for s in range(total)] == pytest.approx(ref, rel=1e-6, abs=1e-12)
    assert {lr_at("constant", 0.1, s, total) for s in range(total)} == {0.1}


# ---------------------------------------------------------------------------------- fit
def test_fit_events_ordered_finite_and_files_written(tmp_path):
    evs = events(tiny(epochs=2), tmp_path)
    kinds = [e.kind for e in evs]
    assert kinds[0] == "start" and kinds[-1] == "done" and evs[-1].data["status"] == "finished"
    assert kinds.count("epoch") == 2 and kinds.count("checkpoint") == 2
    # each epoch event comes after that epoch's steps and right before its checkpoint
    for i, e in enumerate(evs):
        if e.kind == "epoch":
            assert evs[i + 1].kind == "checkpoint" and evs[i + 1].data["epoch"] == e.data["epoch"]
            assert evs[i - 1].kind == "step" and evs[i - 1].data["epoch"] == e.data["epoch"]
    steps = [e.data for e in evs if e.kind == "step"]
    per_epoch = evs[0].data["steps_per_epoch"]
    assert per_epoch == 8  # 512 / 64
    assert [s["step"] for s in steps] == list(range(1, 2 * per_epoch + 1))
    assert all(math.isfinite(s["loss"]) and s["loss"] > 0 for s in steps)
    ep = [e.data for e in evs if e.kind == "epoch"]
    assert [e["epoch"] for e in ep] == [1, 2]
    assert all(0 <= e["test_acc"] <= 1 and 0 <= e["train_acc"] <= 1 for e in ep)
    assert ep[1]["elapsed_s"] > ep[0]["elapsed_s"] > 0
    # metrics.jsonl: every line JSON, the same epochs; checkpoints load with meta
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "epoch"] == [1, 2]
    for key in ("epoch", "train_loss", "test_acc", "images_per_s", "elapsed_s"):
        assert key in lines[[x["kind"] for x in lines].index("epoch")]
    ck = load_checkpoint(tmp_path / "run" / "epoch-0002.safetensors")
    for key in ("model", "num_classes", "in_channels", "input_size", "classes", "mean", "std", "epoch",
                "run_id", "dataset"):
        assert key in ck.meta
    assert ck.meta["epoch"] == 2 and ck.meta["num_classes"] == 10
    state = torch.load(tmp_path / "run" / "last-state.pt", weights_only=True)
    assert state["epochs_done"] == 2 and state["global_step"] == 16 and "state" in state["optimizer"]
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == tiny(epochs=2).to_dict()


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_lowers_the_loss(tmp_path, channels_last):
    evs = events(tiny(epochs=3, limit_train=1024, channels_last=channels_last), tmp_path)
    ep = [e.data for e in evs if e.kind == "epoch"]
    assert ep[-1]["train_loss"] < ep[0]["train_loss"]
    assert ep[-1]["test_acc"] > 0.15  # 10 classes: chance is 0.1


def test_stop_ends_at_a_step_boundary_with_a_checkpoint(tmp_path):
    stop = threading.Event()
    seen = []
    for ev in fit(tiny(epochs=3), run_dir=tmp_path / "r", stop_event=stop):
        seen.append(ev)
        if ev.kind == "step" and ev.data["step"] == 11:
            stop.set()
    tail = [e.kind for e in seen[-2:]]
    assert tail == ["checkpoint", "done"] and seen[-1].data["status"] == "stopped"
    assert seen[-2].data["partial"] is True
    assert max(e.data["step"] for e in seen if e.kind == "step") == 11  # no step after the request
    info = runs.read_run(tmp_path / "r")
    assert info.status == "stopped" and info.last_checkpoint is not None
    assert torch.load(tmp_path / "r" / "last-state.pt", weights_only=True)["global_step"] == 11


def test_resume_continues_epochs_and_curves(tmp_path):
    first = events(tiny(epochs=1), tmp_path, "r")
    assert first[-1].data["status"] == "finished"
    second = list(fit(tiny(epochs=3), resume=tmp_path / "r"))
    start = second[0].data
    assert start["resumed"] and start["start_epoch"] == 2
    assert [e.data["epoch"] for e in second if e.kind == "epoch"] == [2, 3]
    steps = [e.data["step"] for e in second if e.kind == "step"]
    assert steps[0] == 9 and steps[-1] == 24  # numbering continues after epoch 1's 8 steps
    info = runs.read_run(tmp_path / "r")
    assert [e["epoch"] for e in info.epochs] == [1, 2, 3] and len(info.steps) == 24
    assert sorted(info.checkpoints) == [1, 2, 3] and info.status == "finished"
    assert info.epochs[2]["elapsed_s"] > info.epochs[0]["elapsed_s"]
    # the resumed run started from epoch 1's weights (and optimizer state): it ends where a 3-epoch run
    # trained straight through ends, which a run from fresh weights would not
    straight = events(tiny(epochs=3), tmp_path, "straight")
    assert straight[-1].data["status"] == "finished"
    _assert_same_run(tmp_path / "r", tmp_path / "straight")


# A digits-style augmentation with a random crop and MixUp: the resumed run must also continue the
# augmentation generator where it was (the crops and the mixing weights it draws).
AUG_MIX = json.dumps({"steps": [{"name": "RandomCrop", "params": {"size": 32, "padding": 2}},
                                {"name": "MixUp", "params": {"alpha": 0.4}}]})


def _weights(run_dir):
    return load_checkpoint(run_dir / "last.safetensors").state_dict


def _assert_same_run(a, b):
    """Bit-identical final weights, step losses and learning rates, and epoch metrics."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"weights differ in {differ}"
    ra, rb = runs.read_run(a, all_steps=True), runs.read_run(b, all_steps=True)
    assert [(s["step"], s["loss"], s["lr"]) for s in ra.steps] == [(s["step"], s["loss"], s["lr"]) for s in rb.steps]
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "step")
    assert [{k: e[k] for k in keys} for e in ra.epochs] == [{k: e[k] for k in keys} for e in rb.epochs]
    assert ra.status == rb.status == "finished"


@pytest.mark.parametrize("stops", [[11], [3, 8, 13]], ids=["mid-epoch-2", "three-stops"])
def test_stop_anywhere_then_resume_trains_exactly_the_uninterrupted_run(tmp_path, stops):
    """Stop inside an epoch (step 11 of 8-step epochs is batch 3 of epoch 2), at an epoch's end (8),
    several times, then resume: the weights, every step's loss and lr (one-cycle schedule) and every
    epoch's metrics equal those of one run trained straight through with the same seed."""
    cfg = tiny(epochs=3, augment=AUG_MIX, schedule="onecycle", lr=3e-3)
    full = events(cfg, tmp_path, "full")
    assert full[-1].data["status"] == "finished"
    d = tmp_path / "stopped"
    for n, at_step in enumerate(stops):
        stop = threading.Event()
        gen = fit(cfg, run_dir=d, stop_event=stop) if n == 0 else fit(cfg, stop_event=stop, resume=d)
        last = None
        for ev in gen:
            last = ev
            if ev.kind == "step" and ev.data["step"] == at_step:
                stop.set()
        assert last.data["status"] == "stopped"
        state = torch.load(d / "last-state.pt", weights_only=True)
        assert state["global_step"] == at_step
        assert (state["position"] or {}).get("batch", 0) == at_step % 8  # where in its epoch it stopped
    evs = list(fit(cfg, resume=d))
    assert evs[-1].data["status"] == "finished"
    assert [e.data["step"] for e in evs if e.kind == "step"][0] == stops[-1] + 1
    _assert_same_run(d, tmp_path / "full")


def test_poisoned_batch_ends_diverged_with_step_and_advice(tmp_path, monkeypatch):
    real = engine.Normalizer

    class Poison(real):
        calls = 0

        def from_uint8(self, x):
            Poison.calls += 1
            out = super().from_uint8(x)
            return out * float("nan") if Poison.calls == 3 else out

    monkeypatch.setattr(engine, "Normalizer", Poison)
    evs = events(tiny(epochs=2), tmp_path)
    done = evs[-1]
    assert done.kind == "done" and done.data["status"] == "diverged"
    assert done.data["diverged_step"] == 3 and "learning rate" in done.data["advice"]
    assert runs.read_run(tmp_path / "run").status == "diverged"


def test_huge_lr_diverges(tmp_path):
    evs = events(tiny(optimizer="sgd", lr=100.0, momentum=0.9, epochs=2), tmp_path)
    assert evs[-1].data["status"] == "diverged"


def test_missing_dataset_is_an_error_before_start(tmp_path):
    evs = events(tiny(dataset="folder:" + str(tmp_path / "nothing")), tmp_path)
    assert [e.kind for e in evs] == ["error"] and "does not exist" in evs[0].data["message"]
    evs = events(tiny(dataset="no-such-dataset"), tmp_path, "r2")
    assert [e.kind for e in evs] == ["error"] and evs[0].data["advice"]


def test_cuda_oom_is_caught_with_batch_size_advice(tmp_path, monkeypatch):
    from cnnviz import models

    real_create = models.create

    def create(name, num_classes=10, in_channels=3):
        m = real_create(name, num_classes, in_channels)
        inner = m.forward

        def forward(x):
            if m.training:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return inner(x)

        m.forward = forward
        return m

    monkeypatch.setattr(models, "create", create)
    evs = events(tiny(), tmp_path)
    assert evs[-1].kind == "error" and "out of memory" in evs[-1].data["message"]
    assert "batch size 64" in evs[-1].data["advice"] and "32" in evs[-1].data["advice"]


def test_bf16_autocast_and_channels_last_run_the_cuda_code_path_on_cpu(tmp_path):
    evs = events(tiny(precision="bf16", channels_last=True, optimizer="adamw", schedule="cosine",
                      weight_decay=0.01, label_smoothing=0.1), tmp_path)
    assert evs[0].data["precision"] == "bf16" and evs[-1].data["status"] == "finished"
    assert all(math.isfinite(e.data["loss"]) for e in evs if e.kind == "step")
    ck = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert all(t.dtype == torch.float32 for t in ck.state_dict.values() if t.is_floating_point())


def test_compile_failure_falls_back_to_eager_with_a_note(tmp_path, monkeypatch):
    def broken_compile(model, *a, **k):
        def fn(x):
            raise RuntimeError("no compiler here")
        return fn

    monkeypatch.setattr(torch, "compile", broken_compile)
    evs = events(tiny(compile=True), tmp_path)
    assert evs[-1].data["status"] == "finished"
    notes = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"note"' in x]
    assert notes and "fell back to eager" in notes[0]["message"]


def test_schedule_drives_the_optimizer_lr(tmp_path):
    evs = events(tiny(schedule="onecycle", lr=0.01, epochs=2), tmp_path)
    steps = [e.data for e in evs if e.kind == "step"]
    total = len(steps)
    assert [s["lr"] for s in steps] == pytest.approx([lr_at("onecycle", 0.01, i, total) for i in range(total)])
    assert max(s["lr"] for s in steps) == pytest.approx(0.01, rel=0.05)


def test_augment_preset_runs_on_the_batched_path(tmp_path):
    pytest.importorskip("cnnviz.augment.batch")
    evs = events(tiny(augment="cifar-standard"), tmp_path)
    assert evs[-1].data["status"] == "finished", evs[-1].data


def test_checkpoint_thinning_keeps_first_and_last(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for e in range(1, 31):
        (tmp_path / runs.epoch_checkpoint_name(e)).write_bytes(b"x")
    runs.layout.thin_checkpoints(tmp_path, 8)
    kept = sorted(runs.read_run(tmp_path).checkpoints)
    assert len(kept) == 8 and kept[0] == 1 and kept[-1] == 30
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    assert max(gaps) <= 6  # spread out, not just the newest


def test_metrics_log_cuts_a_torn_line_before_appending(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_bytes(b'{"kind": "epoch", "epoch": 1}\n{"kind": "ep')
    log = RunWriter(tmp_path)
    log.write("epoch", {"epoch": 2, "x": float("nan"), "test_acc": 0.5})
    log.close()
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and lines[1]["x"] is None
    summary = json.loads((tmp_path / "summary.json").read_text())  # an epoch line rewrites the summary
    assert summary["epochs_done"] == 2 and summary["best"] == {"epoch": 2, "test_acc": 0.5}
