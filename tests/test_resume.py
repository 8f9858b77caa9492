"""Resume after kill -9, through the real process path (`python -m cnnviz train`, then `--resume`):
the final weights, every step's loss and lr and every epoch's metrics are bit-identical to those of
the same config trained straight through (CPU, same seed), whether the kill came right after an
epoch's checkpoint or in the middle of the next epoch (the steps after the checkpoint are trained
again). Each run is held at a chosen step by its gate file, so the kill lands at a known step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnviz import runs
from cnnviz.models.checkpoints import load_checkpoint
from cnnviz.train import TrainConfig

from .runtools import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
STEPS_PER_EPOCH = 6  # 384 / 64
CFG = TrainConfig(model="lenet5", dataset="shapes", epochs=3, batch_size=64, device="cpu", seed=3,
                  limit_train=384, limit_test=128, schedule="onecycle", lr=3e-3, augment="cifar-standard")


def _train(run_dir: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "cnnviz", "train", "--no-progress", *extra]
    if "--resume" not in extra:
        argv += ["--config", str(run_dir.parent / "config.json"), "--run-dir", str(run_dir)]
    log = open(run_dir.parent / f"{run_dir.name}-{len(list(run_dir.parent.glob('*.log')))}.log", "w")
    return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _lines(d: Path, kind: str) -> list[dict]:
    p = d / runs.METRICS_FILE
    rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []
    return [r for r in rows if r.get("kind") == kind]


def _finish(p: subprocess.Popen) -> None:
    assert p.wait(timeout=300) == 0


def _run_held_then_killed(d: Path, gate: int, until) -> None:
    """Train `d` with its gate at `gate`; once `until(d)` holds (the run waits at the gate), kill -9 it."""
    d.mkdir()
    (d / runs.GATE_FILE).write_text(str(gate))
    p = _train(d)
    try:
        wait_for(lambda: until(d), f"{d.name} to reach step {gate}")
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == -signal.SIGKILL
    assert runs.read_run(d).status == "interrupted"
    (d / runs.GATE_FILE).unlink()
    _finish(_train(d, "--resume", str(d)))


def _same(a: Path, b: Path) -> None:
    wa = load_checkpoint(a / runs.LAST_WEIGHTS).state_dict
    wb = load_checkpoint(b / runs.LAST_WEIGHTS).state_dict
    assert wa.keys() == wb.keys() and not [k for k in wa if not torch.equal(wa[k], wb[k])]
    ra, rb = runs.read_run(a, all_steps=True), runs.read_run(b, all_steps=True)
    assert [(s["step"], s["loss"], s["lr"]) for s in ra.steps] == [(s["step"], s["loss"], s["lr"]) for s in rb.steps]
    assert len(ra.steps) == CFG.epochs * STEPS_PER_EPOCH
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "step")
    assert [{k: e[k] for k in keys} for e in ra.epochs] == [{k: e[k] for k in keys} for e in rb.epochs]
    assert ra.status == rb.status == "finished"


def test_kill_9_after_an_epoch_or_inside_one_then_resume_equals_the_uninterrupted_run(tmp_path):
    root = tmp_path / "runs"  # the test's runs folder: conftest kills anything left in it
    root.mkdir(exist_ok=True)
    (root / "config.json").write_text(json.dumps(CFG.to_dict()))
    straight = root / "straight"
    p = _train(straight)
    after_epoch, inside = root / "after-epoch-1", root / "inside-epoch-2"
    # killed right after epoch 1's checkpoint, while it waits before step 7
    _run_held_then_killed(after_epoch, STEPS_PER_EPOCH,
                          lambda d: [c for c in _lines(d, "checkpoint") if c["epoch"] == 1])
    # killed after step 9 (batch 3 of epoch 2): the last checkpoint is epoch 1's, steps 7-9 are trained again
    _run_held_then_killed(inside, STEPS_PER_EPOCH + 3,
                          lambda d: [s for s in _lines(d, "step") if s["step"] == STEPS_PER_EPOCH + 3])
    assert [r["global_step"] for r in _lines(inside, "resume")] == [STEPS_PER_EPOCH]
    _finish(p)
    _same(after_epoch, straight)
    _same(inside, straight)
