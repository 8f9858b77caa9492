"""A real two-node Ray cluster on this machine, for tests (127.0.0.1 only).

    with RayCluster(cpus=(1, 1)) as c:     # a head and one worker node, each `ray start --block`
        c.address                          # http://127.0.0.1:<dashboard port>: RAY_ADDRESS for the Jobs API
        c.node_ids()                       # the two nodes' ids

Each node is `ray start --block` in a process group of its own (start_new_session), on free ports,
with a small object store and its own --temp-dir, and PATH leading to this venv's python (the job
entrypoints run `python`). Teardown kills exactly those process groups (never Ray's own stop command, which ends
every Ray on the machine) and waits until every process they held is gone, including those that left
the group (raylet, gcs_server, dashboard, agents, log monitor, workers: found by their temp dir).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = 80 * 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports() -> list[str]:
    """Free ports for what one node listens on (two nodes on one machine must not share any)."""
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


def _pids_using(marker: str) -> set[int]:
    """Pids of this user's processes whose command line or environment mention `marker` (the temp dir)."""
    out = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if p.stat().st_uid != os.getuid():
                continue
            cmd = (p / "cmdline").read_bytes()
            if marker.encode() in cmd:
                out.add(int(p.name))
        except OSError:
            continue
    return out


class RayCluster:
    def __init__(self, cpus: tuple[int, ...] = (1, 1), env: dict | None = None):
        self.cpus = cpus
        self.tmp = tempfile.mkdtemp(prefix="cnnviz-ray-", dir="/tmp")  # short: Ray's unix sockets live here
        self.procs: list[subprocess.Popen] = []
        self.gcs_port = free_port()
        self.dash_port = free_port()
        self.address = f"http://127.0.0.1:{self.dash_port}"
        venv_bin = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
                    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", **(env or {})}
        self.env.pop("RAY_ADDRESS", None)

    def _start(self, args: list[str], name: str) -> None:
        log = open(Path(self.tmp) / f"{name}.log", "ab")
        self.procs.append(subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=self.env, start_new_session=True, close_fds=True))

    def start(self) -> "RayCluster":
        self._start(["--head", "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash_port}", "--include-dashboard=true",
                     f"--num-cpus={self.cpus[0]}", "--num-gpus=0", f"--object-store-memory={OBJECT_STORE}",
                     f"--temp-dir={self.tmp}/head", f"--ray-client-server-port={free_port()}", *_ports()], "head")
        self.wait_nodes(1)
        for i, n in enumerate(self.cpus[1:], 1):
            self._start([f"--address=127.0.0.1:{self.gcs_port}", "--node-ip-address=127.0.0.1", f"--num-cpus={n}",
                         "--num-gpus=0", f"--object-store-memory={OBJECT_STORE}", f"--temp-dir={self.tmp}/node{i}",
                         *_ports()], f"node{i}")
        self.wait_nodes(len(self.cpus))
        return self

    def node_ids(self) -> list[str]:
        from ray.util.state import list_nodes

        return [n.node_id for n in list_nodes(address=self.address, timeout=10) if n.state == "ALIVE"]

    def wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited ({p.returncode}): {self.logs()}")
            try:
                urllib.request.urlopen(self.address + "/api/version", timeout=2).read()
                if len(self.node_ids()) >= n:
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            time.sleep(0.5)
        raise RuntimeError(f"the Ray cluster did not come up with {n} node(s) in {timeout:.0f} s ({last}): "
                           f"{self.logs()}")

    def logs(self) -> str:
        return " | ".join(p.read_text(errors="replace")[-1500:] for p in sorted(Path(self.tmp).glob("*.log")))

    def pids(self) -> set[int]:
        """Every live process of this cluster: the `ray start` processes and all that mention its temp dir."""
        return {p.pid for p in self.procs if p.poll() is None} | _pids_using(self.tmp)

    def stop(self, timeout: float = 60.0) -> set[int]:
        """Kill the cluster's process groups (SIGTERM, then SIGKILL), then any of its processes that left
        them; returns the pids still alive after `timeout` (empty when all are gone)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                try:
                    os.killpg(p.pid, sig)
                except OSError:
                    pass
            end = time.monotonic() + (5 if sig == signal.SIGTERM else timeout)
            while time.monotonic() < end and any(p.poll() is None for p in self.procs):
                time.sleep(0.2)
        end = time.monotonic() + timeout
        left = self.pids()
        while left and time.monotonic() < end:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
            left = {pid for pid in self.pids() if Path(f"/proc/{pid}").exists() and _not_zombie(pid)}
        shutil.rmtree(self.tmp, ignore_errors=True)
        return left

    def __enter__(self) -> "RayCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")
