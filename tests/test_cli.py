"""`python -m cnnviz train` end to end in a subprocess: progress, JSON summary, kill -9 and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnviz import runs
from cnnviz.models.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "lenet5", "--dataset", "shapes", "--batch-size", "64", "--lr", "1e-3", "--optimizer", "adam",
        "--device", "cpu", "--seed", "0", "--limit-test", "256"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "cnnviz", *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_cli_train_end_to_end_on_shapes(tmp_path):
    run_dir = tmp_path / "run"
    p = cli("train", *TINY, "--epochs", "2", "--limit-train", "512", "--run-dir", str(run_dir))
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert 0 <= summary["test_acc"] <= 1 and summary["config"]["model"] == "lenet5"
    assert "step/s" in p.stderr or "it/s" in p.stderr or "%" in p.stderr  # the tqdm bar went to stderr
    assert "epoch 2:" in p.stderr
    epochs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        for key in ("train_loss", "test_acc", "images_per_s", "elapsed_s"):
            assert isinstance(e[key], (int, float))
        assert 0 <= e["test_acc"] <= 1
    assert load_checkpoint(run_dir / "last.safetensors").meta["epoch"] == 2


def test_cli_bad_arguments_give_a_clear_error_and_json(tmp_path):
    p = cli("train", *TINY, "--optimizer", "rmsprop", "--run-dir", str(tmp_path / "r"))
    assert p.returncode == 2 and "optimizer must be one of" in p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["status"] == "error"
    p = cli("train", *TINY, "--dataset", "folder:" + str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r"))
    assert p.returncode == 2 and "does not exist" in p.stderr


@pytest.mark.slow
def test_kill_9_leaves_valid_metrics_and_a_checkpoint_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "cnnviz", "train", *TINY, "--epochs", "40", "--limit-train", "1024",
            "--run-dir", str(run_dir), "--no-progress"]
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:  # wait for 2 epochs, then kill mid-epoch 3
            m = run_dir / "metrics.jsonl"
            if m.exists() and m.read_text().count('"kind": "epoch"') >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the CLI run made no progress")
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    raw = (run_dir / "metrics.jsonl").read_bytes()
    lines = raw.split(b"\n")
    complete = lines[:-1] if not raw.endswith(b"\n") else lines[:-1]
    for line in complete:  # every complete line is valid JSON (a torn last one is allowed)
        json.loads(line)
    info = runs.read_run(run_dir)
    assert info.status == "interrupted" and len(info.epochs) >= 2
    ck = load_checkpoint(info.last_checkpoint)
    assert ck.meta["epoch"] >= 2
    done_before = info.epochs_done
    p = cli("train", "--resume", str(run_dir), "--epochs", str(done_before + 1), "--no-progress")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["epochs_done"] == done_before + 1
    info = runs.read_run(run_dir)
    assert [e["epoch"] for e in info.epochs] == list(range(1, done_before + 2))
    steps = [s["step"] for s in info.steps]
    assert steps == list(range(1, steps[-1] + 1))  # no duplicated or missing steps after the resume


def test_sigint_stops_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "cnnviz", "train", *TINY, "--epochs", "40", "--limit-train", "1024",
            "--run-dir", str(run_dir), "--no-progress"]
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        m = run_dir / "metrics.jsonl"
        if m.exists() and '"kind": "step"' in m.read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "stopped"
    assert runs.read_run(run_dir).status == "stopped"
