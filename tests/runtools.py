"""Shared helpers for tests that start run processes: a runs root of the test's own (every process it
started is killed when the test ends), waiting for a condition on run directories, fake runs."""

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
from cnnviz.runs import liveness
from cnnviz.train import TrainConfig


def kill_runs_under(root: Path) -> None:
    """SIGKILL every live process recorded in a run directory under `root` (the launcher's whole session,
    and the training process itself), never this test process."""
    if not root.is_dir():
        return
    for d in root.iterdir():
        if not d.is_dir():
            continue
        rec = liveness.read_launcher(d)
        if rec and rec.get("pid") and liveness.process_alive(int(rec["pid"]), rec.get("start")):
            try:
                os.killpg(int(rec["pid"]), signal.SIGKILL)  # launched in a session of its own: all of it
            except OSError:
                pass
        pid = liveness.read_pid(d)
        if pid and pid[0] != os.getpid() and liveness.process_alive(*pid):
            try:
                os.kill(pid[0], signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """A runs root of this test's own, one run at a time; every process it started ends with it."""
    r = tmp_path / "runs"
    r.mkdir()
    monkeypatch.setenv("CNNVIZ_RUNS", str(r))
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "1")
    yield r
    kill_runs_under(r)


def wait_for(cond, what: str, timeout: float = 240.0, every: float = 0.2):
    """Poll `cond()` until it is truthy (returns its value), or fail after `timeout` seconds. The cap is
    for a machine that is much slower than expected: the test waits for a condition, never a time."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def sleeper() -> subprocess.Popen:
    """A live process to stand for a run's trainer (kill it to make the run 'interrupted')."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def fake_run(root: Path, name: str, lines: list[dict], config: dict | None = None,
             pid: subprocess.Popen | None = None) -> Path:
    """A run directory as a run process leaves it: config.json, metrics.jsonl, the pid file of `pid`."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / runs.CONFIG_FILE).write_text(json.dumps(config or TrainConfig(epochs=2, device="cpu").to_dict()))
    append(d, lines)
    if pid is not None:
        (d / runs.PID_FILE).write_text(f"{pid.pid} {liveness.process_start_time(pid.pid)}")
    return d


def append(run_dir: Path, lines: list[dict]) -> None:
    with open(run_dir / runs.METRICS_FILE, "a") as f:
        for x in lines:
            f.write(json.dumps({"t": time.time(), **x}) + "\n")


def train_run(root: Path, cfg: TrainConfig) -> Path:
    """Train `cfg` to the end in this process (`fit`, as a notebook does) into a new run under `root`."""
    from cnnviz.runs.layout import new_run_dir
    from cnnviz.train import fit

    run_dir = new_run_dir(cfg.model, cfg.dataset, root)
    last = None
    for ev in fit(cfg, run_dir=run_dir):
        last = ev
    assert last is not None and last.kind == "done" and last.data.get("status") == "finished", last
    return run_dir


class CliResult:
    """What an in-process `python -m cnnviz` call gave: like subprocess.CompletedProcess."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli_here(capsys, monkeypatch, *args: str, cwd: Path | None = None) -> CliResult:
    """`python -m cnnviz ARGS` as the CLI's main() in this process: no interpreter start, no torch
    import (a fraction of a second instead of seconds); the exit code and output as the process
    gives them. For the error paths; a test keeps at least one real process call beside it."""
    from cnnviz.cli import main

    capsys.readouterr()
    here = Path.cwd()
    if cwd is not None:
        monkeypatch.chdir(cwd)
    try:
        code = main(list(args))
    finally:
        monkeypatch.chdir(here)
    out = capsys.readouterr()
    return CliResult(code, out.out, out.err)

