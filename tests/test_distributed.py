"""The same training under torchrun (gloo, CPU): 2 ranks against 1 process, resume, two "nodes", a dying rank.

2 x 64 against 1 x 128 on `shapes`, LeNet5, no augmentation, the same seed: every rank takes its
share `[rank::2]` of each global batch and DDP averages the gradients, so the per-step losses
differ by float rounding only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnviz import models
from cnnviz.models.checkpoints import load_checkpoint, load_into
from cnnviz import runs
from cnnviz.runs import queue

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
ARGS = ["--model", "lenet5", "--dataset", "shapes", "--augment", "none", "--batch-size", "128", "--seed", "3",
        "--device", "cpu", "--limit-train", "1536", "--limit-test", "512", "--no-progress"]


def _lines(run_dir: Path) -> list[dict]:
    """Every JSON line of the run's metrics.jsonl (the raw log: these tests compare every step)."""
    p = run_dir / runs.METRICS_FILE
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def _env(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CNNVIZ_RUNS": str(root), "OMP_NUM_THREADS": "1"}


def cli(root: Path, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnviz", "train", *args], cwd=ROOT, env=_env(root),
                          capture_output=True, text=True, timeout=timeout)


def step_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(x["step"], x["loss"]) for x in _lines(run_dir) if x.get("kind") == "step"]


def kinds(run_dir: Path, kind: str) -> list[dict]:
    return [x for x in _lines(run_dir) if x.get("kind") == kind]


def test_two_ranks_match_one_process_step_by_step_and_resume(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    a = cli(tmp_path, *ARGS, "--epochs", "1", "--run-dir", str(one))
    b = cli(tmp_path, *ARGS, "--epochs", "1", "--nproc", "2", "--run-dir", str(two))
    assert a.returncode == 0, a.stderr[-3000:]
    assert b.returncode == 0, b.stderr[-3000:]
    la, lb = step_losses(one), step_losses(two)
    assert len(la) == len(lb) == 12  # 1536 / 128 steps, logged every step on the CPU
    assert [s for s, _ in la] == [s for s, _ in lb]
    worst = max(abs(x - y) / abs(x) for (_, x), (_, y) in zip(la, lb))
    print(f"largest relative per-step loss difference, 2 ranks vs 1 process: {worst:.3e}")
    assert worst < 1e-3
    start = kinds(two, "start")[0]
    assert start["world_size"] == 2 and start["n_train"] == 1536
    ea, eb = kinds(one, "epoch")[0], kinds(two, "epoch")[0]
    # after 12 steps the two models differ by the float rounding the per-step check allows (1e-3):
    # the same test accuracy, the test loss within the same relative bound
    assert abs(ea["test_acc"] - eb["test_acc"]) < 1e-9
    assert abs(ea["test_loss"] - eb["test_loss"]) / ea["test_loss"] < 1e-3
    # rank 0 alone wrote: one start, one epoch line, one done line; the summary came once
    assert len(kinds(two, "epoch")) == 1 and len(kinds(two, "done")) == 1
    assert sum(1 for ln in b.stdout.splitlines() if ln.startswith("{")) == 1
    # the checkpoint loads into a plain model (no "module." prefix)
    ckpt = load_checkpoint(two / runs.LAST_WEIGHTS)
    assert not any(k.startswith("module.") for k in ckpt.state_dict)
    plain = models.create("lenet5")
    load_into(plain, ckpt, "lenet5")
    ref = models.create("lenet5")
    load_into(ref, load_checkpoint(one / runs.LAST_WEIGHTS), "lenet5")
    x = torch.rand(2, 3, 32, 32)
    # the same model up to the rounding drift of 12 steps (~1e-3 on logits of ~0.2; another model's
    # weights, or a failed load, differ by ~1e-1)
    assert torch.allclose(plain(x), ref(x), atol=5e-3), (plain(x) - ref(x)).abs().max()
    # resume under torchrun: every rank loads the checkpoint, the curve goes on, each epoch once
    c = cli(tmp_path, "--resume", str(two), "--epochs", "2", "--nproc", "2", "--no-progress")
    assert c.returncode == 0, c.stderr[-3000:]
    info = runs.read_run(two)
    assert info.status == "finished" and [e["epoch"] for e in info.epochs] == [1, 2]
    assert len(kinds(two, "epoch")) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_launch_on_localhost_finishes(tmp_path):
    run_dir, port = tmp_path / "nodes", _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
         "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
         "-m", "cnnviz", "train", *ARGS, "--epochs", "1", "--run-dir", str(run_dir)],
        cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    info = runs.read_run(run_dir)
    assert info.status == "finished" and kinds(run_dir, "start")[0]["world_size"] == 2
    assert len(kinds(run_dir, "epoch")) == 1


def _rank_pid(run_dir: Path, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` training `run_dir` (read from /proc: this test's own processes)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = (p / "environ").read_bytes().split(b"\0")
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and str(run_dir).encode() in cmd and b"cnnviz" in cmd:
            return int(p.name)
    return None


def test_a_dying_rank_takes_the_run_down_and_it_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_RUNS", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from cnnviz.train import TrainConfig

    cfg = TrainConfig(model="lenet5", dataset="shapes", batch_size=64, epochs=300, device="cpu", limit_train=128,
                      limit_test=64)
    run_dir = queue.submit(cfg, tmp_path, nproc=2)
    end = time.monotonic() + 240
    while time.monotonic() < end and not kinds(run_dir, "checkpoint"):
        time.sleep(0.2)
    assert kinds(run_dir, "checkpoint"), runs.layout.log_tail(run_dir)
    pid = _rank_pid(run_dir, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 240
    while time.monotonic() < end and runs.read_run(run_dir).status != "interrupted":
        time.sleep(0.2)
    info = runs.read_run(run_dir)
    assert info.status == "interrupted", (info.status, runs.layout.log_tail(run_dir))
    done = info.epochs_done
    queue.submit(TrainConfig(**{**cfg.to_dict(), "epochs": done + 1}), tmp_path, resume_run_dir=run_dir,
                    nproc=2)
    end = time.monotonic() + 240
    while time.monotonic() < end and runs.read_run(run_dir).status != "finished":
        time.sleep(0.2)
    info = runs.read_run(run_dir)
    assert info.status == "finished", runs.layout.log_tail(run_dir)
    assert [e["epoch"] for e in info.epochs] == list(range(1, done + 2))
    assert json.loads((run_dir / runs.CONFIG_FILE).read_text())["epochs"] == done + 1
