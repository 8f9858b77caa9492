"""Run `python -m cnnviz serve` in a test: start it, wait for it, always end everything it started.

The launcher writes `state.json` in its run folder (the test's tmp_path): its pid, the proxy's
URL, `ready`, and every pid it ever started (HAProxy's and each worker's, restarts included).
Ending is by pid and process group only: SIGTERM to the launcher (which stops its children), and,
should it not finish in time, SIGKILL to its group and to every recorded child's group.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


def require_haproxy() -> str:
    """haproxy's path; skip (fail under CI=true) without it."""
    if HAPROXY:
        return HAPROXY
    msg = "haproxy not found: install Debian's package with `apt-get install haproxy`"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"serving tests must run in CI, but {msg}", pytrace=False)
    pytest.skip(msg)


def read_state(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def all_pids(state: dict) -> list[int]:
    """Every pid the launcher started: HAProxy's and the workers', restarts included."""
    out = []
    for c in [state.get("proxy")] + list(state.get("workers") or []):
        if c:
            out.extend(c.get("pids") or [])
    return out


def wait_for(cond, timeout: float, what: str, interval: float = 0.1):
    """Poll `cond()` until it returns something truthy (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def get(url: str, path: str = "/_stcore/health", cookie: str | None = None) -> tuple[int, dict[str, str]]:
    """One GET through the proxy: (status, lower-cased headers); no cookie jar, so each call is a
    'new browser' unless `cookie` (CNNVIZ_SERVER's value) is given."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": f"CNNVIZ_SERVER={cookie}"} if cookie else {})
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


@contextlib.contextmanager
def launched(run_dir: Path, workers: int = 2, env: dict[str, str] | None = None,
             timeout: float = 240, port: int | None = None,
             args: list[str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start the launcher with `--dir run_dir` on `port` (default: a free one) and more `args`; yield
    (process, proxy URL) once it is ready; on the way out stop it with SIGTERM and check that every
    process it started ended."""
    from cnnviz.serve import free_port

    require_haproxy()
    port = port or free_port()
    out = open(run_dir / "launcher.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnviz", "serve", "--workers", str(workers), "--port", str(port),
         "--dir", str(run_dir), *(args or [])],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        def ready():
            if proc.poll() is not None:
                pytest.fail(f"the launcher exited with {proc.returncode}: "
                            f"{(run_dir / 'launcher.log').read_text()[-2000:]}")
            s = read_state(run_dir)
            return s if s and s.get("ready") else None

        state = wait_for(ready, timeout, "the launcher to be ready", interval=0.3)
        yield proc, state["url"]
    except BaseException:
        stop_launcher(proc, run_dir, check=False)  # the test's own failure is the one to report
        raise
    else:
        stop_launcher(proc, run_dir)
    finally:
        out.close()


def stop_launcher(proc: subprocess.Popen, run_dir: Path, timeout: float = 40, check: bool = True) -> None:
    """SIGTERM the launcher; it must exit 0 and leave none of its processes alive. Whatever is still
    there after `timeout` is killed (by process group) and the test fails."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    state = read_state(run_dir) or {}
    left = [p for p in all_pids(state) if alive(p)]
    if code is None or left:
        for pid in [proc.pid, *left]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        proc.wait(10)
    if not check:
        return
    assert code == 0, f"the launcher did not stop cleanly on SIGTERM (exit {code})"
    assert not left, f"processes left running after the launcher stopped: {left}"
