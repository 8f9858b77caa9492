"""TensorBoard event files of cnnviz runs, read back with TensorBoard's own EventAccumulator.

Every epoch scalar equals metrics.jsonl; one folder per run, the HParams session summary inside it
(no extra folder); the confusion matrix and the augmented samples as images; exporting twice (or
training with --tensorboard, then exporting) leaves each point once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import metadata as hp_metadata  # noqa: E402

from cnnviz.train import TrainConfig, fit  # noqa: E402
from cnnviz import runs  # noqa: E402
from cnnviz.train import tensorboard as tb  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "cnnviz", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _acc(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    """Two tiny finished runs on `shapes`: LeNet5 without and ResNet-small with augmentation."""
    root = tmp_path_factory.mktemp("tb-runs")
    out = []
    for i, (model, aug) in enumerate([("lenet5", "none"), ("resnet_small", "cifar-standard")]):
        cfg = TrainConfig(model=model, dataset="shapes", augment=aug, epochs=2, batch_size=32, device="cpu",
                          seed=i, limit_train=128, limit_test=64)
        run_dir = root / f"run{i}-{model}"
        evs = list(fit(cfg, run_dir=run_dir))
        assert evs[-1].data["status"] == "finished", evs[-1].data
        out.append(run_dir)
    return out


def _check_matches_metrics(folder: Path, run_dir: Path) -> EventAccumulator:
    """Every epoch scalar and step loss in `folder` equals the run's metrics.jsonl, each point once."""
    acc = _acc(folder)
    run = runs.read_run(run_dir)
    scalars = set(acc.Tags()["scalars"])
    assert set(tb.EPOCH_SCALARS) | {tb.STEP_LOSS} == scalars
    for tag, key in tb.EPOCH_SCALARS.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        want = [(int(e["epoch"]), float(e[key])) for e in run.epochs]
        assert [s for s, _ in got] == [s for s, _ in want], tag  # no duplicates, epoch order
        for (_, g), (_, w) in zip(got, want):
            assert g == pytest.approx(w, rel=1e-6, abs=1e-7), tag  # stored as float32
    steps = [(e.step, e.value) for e in acc.Scalars(tb.STEP_LOSS)]
    assert [s for s, _ in steps] == [int(s["step"]) for s in run.steps]
    assert [v for _, v in steps] == pytest.approx([s["loss"] for s in run.steps], rel=1e-6)
    return acc


def _hparams(acc: EventAccumulator) -> dict:
    content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    assert hp_metadata.SESSION_START_INFO_TAG in content
    ssi = hp_metadata.parse_session_start_info_plugin_data(content[hp_metadata.SESSION_START_INFO_TAG])
    out = {}
    for k, v in ssi.hparams.items():
        kind = v.WhichOneof("kind")
        out[k] = getattr(v, kind)
    return out


def test_export_writes_one_folder_per_run_matching_metrics(two_runs, tmp_path):
    logdir = tmp_path / "logs"
    for run_dir in two_runs:
        res = tb.write_run(run_dir, logdir)
        assert res.path == logdir / run_dir.name and not res.notes, res.notes
        assert set(res.images) == {tb.CONFUSION_TAG, tb.SAMPLES_TAG}
    assert sorted(os.listdir(logdir)) == sorted(r.name for r in two_runs)  # no hparams sub-folders
    for run_dir in two_runs:
        folder = logdir / run_dir.name
        assert [p.is_file() for p in folder.iterdir()] == [True]  # one event file, nothing else
        acc = _check_matches_metrics(folder, run_dir)
        cfg = json.loads((run_dir / "config.json").read_text())
        hp = _hparams(acc)
        assert hp["model"] == cfg["model"] and hp["optimizer"] == cfg["optimizer"]
        assert hp["lr"] == pytest.approx(cfg["lr"]) and hp["batch_size"] == cfg["batch_size"]
        assert hp["augment"] == cfg["augment"] and hp["n_train"] == 128
        assert hp_metadata.SESSION_END_INFO_TAG in acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
        images = acc.Tags()["images"]
        assert set(images) == {tb.CONFUSION_TAG, tb.SAMPLES_TAG}
        cm = acc.Images(tb.CONFUSION_TAG)
        assert len(cm) == 1 and cm[0].step == 2 and cm[0].width > 100
        assert len(acc.Images(tb.SAMPLES_TAG)) == 1


def test_exporting_twice_does_not_duplicate(two_runs, tmp_path):
    logdir = tmp_path / "logs"
    run_dir = two_runs[0]
    tb.write_run(run_dir, logdir, images=False)
    first = tb.event_files(logdir / run_dir.name)
    tb.write_run(run_dir, logdir, images=False)
    second = tb.event_files(logdir / run_dir.name)
    assert len(first) == len(second) == 1
    _check_matches_metrics(logdir / run_dir.name, run_dir)
    # even a reader that sees an old file next to the new one (a TensorBoard already watching)
    # keeps each point once: the new file starts by purging what came before
    earlier = second[0].read_bytes()
    old = (logdir / run_dir.name / "events.out.tfevents.0000000001.old.1.0")
    old.write_bytes(earlier)
    tb.write_run(run_dir, logdir, images=False)
    assert not old.exists() and len(tb.event_files(logdir / run_dir.name)) == 1
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "events.out.tfevents.0000000001.a.1.0").write_bytes(earlier)
    (mixed / "events.out.tfevents.0000000002.b.1.0").write_bytes(tb.event_files(logdir / run_dir.name)[0].read_bytes())
    _check_matches_metrics(mixed, run_dir)


def test_cli_train_with_tensorboard_then_export(tmp_path):
    logdir = tmp_path / "logs"
    run_dir = tmp_path / "run"
    p = _cli("train", "--model", "lenet5", "--dataset", "shapes", "--epochs", "2", "--batch-size", "32",
             "--limit-train", "128", "--limit-test", "64", "--device", "cpu", "--run-dir", str(run_dir),
             "--no-progress", "--tensorboard", str(logdir))
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["tensorboard"] == str(logdir / run_dir.name)
    assert os.listdir(logdir) == [run_dir.name]
    acc = _check_matches_metrics(logdir / run_dir.name, run_dir)
    assert set(acc.Tags()["images"]) == {tb.CONFUSION_TAG, tb.SAMPLES_TAG}
    assert _hparams(acc)["epochs"] == 2
    p = _cli("export", str(run_dir), "--tensorboard", str(logdir))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["tensorboard"] == str(logdir / run_dir.name) and out["epochs"] == 2
    assert len(tb.event_files(logdir / run_dir.name)) == 1
    _check_matches_metrics(logdir / run_dir.name, run_dir)


def test_bad_logdir_and_run_are_one_line(tmp_path, two_runs):
    f = tmp_path / "a-file"
    f.write_text("x")
    p = _cli("export", str(two_runs[0]), "--tensorboard", str(f))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "not a folder" in p.stderr
    p = _cli("export", str(tmp_path / "nope"), "--tensorboard", str(tmp_path / "logs"))
    assert p.returncode == 2 and "No run directory" in p.stderr
    p = _cli("train", "--model", "lenet5", "--dataset", "shapes", "--run-dir", str(tmp_path / "r"),
             "--tensorboard", str(f))
    assert p.returncode == 2 and "not a folder" in p.stderr and not (tmp_path / "r").exists()


def test_live_writer_on_a_resumed_run_keeps_each_point_once(tmp_path):
    logdir, run_dir = tmp_path / "logs", tmp_path / "run"
    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu",
                      limit_train=128, limit_test=64)
    live = tb.LiveWriter(logdir, device="cpu")
    for ev in fit(cfg, run_dir=run_dir):
        live.on_event(ev)
    assert not live.notes and live.result is not None
    live = tb.LiveWriter(logdir, device="cpu")
    during = None
    for ev in fit(TrainConfig.from_dict({**cfg.to_dict(), "epochs": 2}), resume=run_dir):
        live.on_event(ev)
        if ev.kind == "epoch":  # mid-run: the replayed epoch 1 and the live epoch 2, once each
            during = [e.step for e in _acc(logdir / run_dir.name).Scalars("accuracy/test")]
    assert during == [1, 2] and not live.notes
    acc = _check_matches_metrics(logdir / run_dir.name, run_dir)
    assert [e.step for e in acc.Scalars("accuracy/test")] == [1, 2]
    assert len(tb.event_files(logdir / run_dir.name)) == 1
