"""The Ray executor: each run is a job of a Ray cluster (`CNNVIZ_EXECUTOR=ray`, `RAY_ADDRESS=http://HEAD:8265`).

    ex = RayExecutor()
    record = ex.start(run_dir, argv)      # submit_job: entrypoint = the run's CLI command, shlex-quoted
    ex.alive(run_dir, record)             # its job PENDING or RUNNING (or the cluster did not answer)
    ex.why_ended(run_dir, record)         # SUCCEEDED/FAILED/STOPPED without a final line -> a cnnviz status
    ex.stop(run_dir, record)              # stop_job (the queue calls it once the stop file is older than the grace)
    ex.cluster(root)                      # nodes, CPUs/GPUs total and free (what dispatch may still submit)

Only this module imports Ray, and only `executor("ray")` imports this module.

A run is the same command as on one machine (`python -m cnnviz train --config ... --run-dir ...`),
submitted to Ray's Jobs API with `submission_id` = the run id (a resume: `<run id>-2`, `-3`, ...),
`entrypoint_num_gpus` = its processes on CUDA (`--nproc`, else 1), `entrypoint_num_cpus` =
$CNNVIZ_RAY_RUN_CPUS (default 1) per process, `entrypoint_memory` = $CNNVIZ_RUN_MEMORY_MB when set,
and metadata {owner, sweep, run_id}. The code travels as the job's `runtime_env` working_dir (this
package's folder, large folders excluded); the entrypoint's python is $CNNVIZ_RAY_PYTHON (default
`python`: the first on the PATH of the node's `ray start`, which is the Python Ray itself runs in).
The run directory and the datasets must be on storage every node sees (`CNNVIZ_RUNS`, `CNNVIZ_DATA`):
the job's first act is to read a token written into the run directory at submit, and a node that
cannot see it ends the job with one line ("node ... cannot see the runs folder ..."), which becomes
the run's error.

Nothing keeps a driver connected: every question is one HTTP request to the dashboard (job status
cached for STATUS_TTL_S). A cluster that does not answer raises `ExecutorUnavailable` where a
decision needs it (submit, capacity); a run whose job cannot be asked is taken as still alive, so
nothing is marked failed while the cluster is away.
"""

from __future__ import annotations

import os
import shlex
import socket
import secrets
import threading
import time
from pathlib import Path

from ..limits import env_number
from .executor import OOM_MARKERS, PACKAGE_ROOT, ExecutorUnavailable, run_memory_mb
from .layout import LAUNCHER_FILE, LOG_FILE, OWNER_FILE, STOP_FILE, has_ended, read_config, read_json, sweep_of, write_json
from .status_type import Status

STATUS_TTL_S = 1.0          # a job's status is asked at most once a second per server process
DOWN_TTL_S = 5.0            # a cluster that did not answer is not asked again for this long
REQUEST_TIMEOUT_S = 10.0
TOKEN_FILE = "node-check"   # written at submit; the job checks it can read it (shared storage)
# gitignore-style, as Ray reads them: a leading "/" is the package folder's own (cnnviz/runs is code)
EXCLUDES = ["/.venv", "/venv", "/.git", "/tests", "/test-artifacts", "/runs", "/data", "/bench", "/deploy",
            "node_modules", "__pycache__", "*.pyc", ".pytest_cache", "*.safetensors", "*.pt", "*.onnx", "*.zip"]
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "KEY", "COOKIE", "OIDC")
LIVE = ("PENDING", "RUNNING")


def address() -> str:
    """The Ray dashboard (Jobs API) address: $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS; ValueError without."""
    addr = (os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or "").strip()
    if not addr:
        raise ValueError("CNNVIZ_EXECUTOR=ray needs RAY_ADDRESS=http://HEAD:8265 (the Ray dashboard's address); "
                         "unset CNNVIZ_EXECUTOR to run on this machine.")
    return addr if "://" in addr else f"http://{addr}"


def stop_grace_s() -> float:
    return max(0.0, env_number("CNNVIZ_RAY_STOP_GRACE_S", 30.0, what="a number of seconds"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def unreachable(addr: str, exc: BaseException) -> ExecutorUnavailable:
    return ExecutorUnavailable(f"the Ray cluster at {addr} did not answer: {_one_line(exc)} (queued runs stay "
                               "queued; unset CNNVIZ_EXECUTOR to run them on this machine)")


_LOCK = threading.Lock()
_CLIENTS: dict[str, object] = {}
_DOWN: dict[str, tuple[float, ExecutorUnavailable]] = {}
_INFO: dict[tuple[str, str], tuple[float, object]] = {}


def _client(addr: str):
    """A JobSubmissionClient for `addr` (cached; its HTTP requests time out), or ExecutorUnavailable."""
    with _LOCK:
        down = _DOWN.get(addr)
        if down and time.monotonic() - down[0] < DOWN_TTL_S:
            raise down[1]
        c = _CLIENTS.get(addr)
    if c is not None:
        return c
    import logging

    from ray.job_submission import JobSubmissionClient

    for name in [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]:
        logging.getLogger(name).setLevel(logging.ERROR)  # its packaging notes would clutter the CLI

    class _Client(JobSubmissionClient):
        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
            return super()._do_request(method, endpoint, **kwargs)

    try:
        c = _Client(addr)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, requests' errors: one line
        raise _went_down(addr, exc) from None
    with _LOCK:
        _CLIENTS[addr] = c
    return c


def _went_down(addr: str, exc: BaseException) -> ExecutorUnavailable:
    err = unreachable(addr, exc)
    with _LOCK:
        _DOWN[addr] = (time.monotonic(), err)
        _CLIENTS.pop(addr, None)
    return err


def _call(addr: str, fn, *args, **kwargs):
    """`fn(client, ...)`; a connection problem becomes ExecutorUnavailable (and the address is noted down)."""
    import requests

    c = _client(addr)
    try:
        return fn(c, *args, **kwargs)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError) as exc:
        raise _went_down(addr, exc) from None


def _missing(exc: BaseException) -> bool:
    text = str(exc)
    return "does not exist" in text or "404" in text


def job_info(addr: str, job_id: str, fresh: bool = False):
    """The job's JobDetails (status, driver_node_id, message, ...), cached STATUS_TTL_S; None when the
    cluster does not know it; ExecutorUnavailable when the cluster did not answer."""
    key = (addr, job_id)
    with _LOCK:
        hit = _INFO.get(key)
    if hit and not fresh and time.monotonic() - hit[0] < STATUS_TTL_S:
        return hit[1]
    try:
        info = _call(addr, lambda c: c.get_job_info(job_id))
    except RuntimeError as exc:
        if not _missing(exc):
            raise
        info = None
    with _LOCK:
        _INFO[key] = (time.monotonic(), info)
    return info


def _status(info) -> str:
    return str(getattr(getattr(info, "status", None), "value", getattr(info, "status", "")) or "")


def needs(config: dict, nproc: int | None, cluster_gpus: float = 0.0) -> dict[str, float]:
    """What a run asks of a node: {"CPU", "GPU", "memory"} from its config's device and `nproc`."""
    n = int(nproc or 1)
    cpus = env_number("CNNVIZ_RAY_RUN_CPUS", 1.0, what="a number of CPUs")
    device = str(config.get("device") or "auto")
    gpus = float(n) if device == "cuda" or (device == "auto" and cluster_gpus > 0) else 0.0
    out = {"CPU": cpus * (n if gpus == 0 else 1), "GPU": gpus}
    mb = run_memory_mb()
    if mb:
        out["memory"] = float(mb * 2**20)
    return out


def _job_env(run_dir: Path, addr: str, token: str) -> dict[str, str]:
    """The job's environment: cnnviz's settings (no secrets), absolute runs/data folders, this executor."""
    env = {k: v for k, v in os.environ.items()
           if k.startswith("CNNVIZ_") and not any(w in k for w in SECRET_WORDS) and k != "CNNVIZ_SERVER_OMP_PASSIVE"}
    data = Path(os.environ.get("CNNVIZ_DATA") or "data").resolve()
    env.update(CNNVIZ_RUNS=str(Path(run_dir).resolve().parent), CNNVIZ_DATA=str(data), CNNVIZ_EXECUTOR="ray",
               RAY_API_SERVER_ADDRESS=addr, CNNVIZ_NODE_CHECK=token)
    if data.is_dir():
        env["CNNVIZ_NODE_CHECK_DATA"] = "1"
    return env


class RayExecutor:
    """Runs as Ray jobs on the cluster at $RAY_ADDRESS."""

    name = "ray"

    def __init__(self, addr: str | None = None):
        self.address = addr or address()

    def stop_grace_s(self) -> float:
        """Seconds a Stop waits for the run's own checkpoint-and-exit before `stop_job` ends its job."""
        return stop_grace_s()

    # -------------------------------------------------------------- the executor seam
    def start(self, run_dir: Path, argv: list[str]) -> dict:
        run_dir = Path(run_dir).resolve()
        config = read_config(run_dir)
        nproc = int(argv[argv.index("--nproc") + 1]) if "--nproc" in argv else None
        need = needs(config, nproc, self._cluster_gpus())
        token = secrets.token_hex(8)
        (run_dir / TOKEN_FILE).write_text(token)
        python = os.environ.get("CNNVIZ_RAY_PYTHON", "").strip() or "python"
        entrypoint = shlex.join([python, *argv])
        owner = read_json(run_dir / OWNER_FILE) or {}
        meta = {"run_id": run_dir.name, "owner": str(owner.get("owner") or ""),
                "sweep": str(sweep_of(run_dir).get("sweep_id") or ""), "runs": str(run_dir.parent), "cnnviz": "1",
                **{f"cnnviz_{k.lower()}": f"{v:g}" for k, v in need.items()}}
        job_id = self._free_id(run_dir.name)
        env_vars = _job_env(run_dir, self.address, token)
        if need["CPU"] >= 1 and "OMP_NUM_THREADS" not in os.environ:  # torch's threads = the CPUs Ray reserved
            env_vars["OMP_NUM_THREADS"] = str(int(need["CPU"] / max(1, nproc or 1)) or 1)
        runtime_env = {"working_dir": str(PACKAGE_ROOT), "excludes": EXCLUDES, "env_vars": env_vars}
        kw = {"entrypoint_num_cpus": need["CPU"], "entrypoint_num_gpus": need["GPU"]}
        if "memory" in need:
            kw["entrypoint_memory"] = int(need["memory"])
        with open(run_dir / LOG_FILE, "ab") as log:
            log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} submitted to the Ray cluster at {self.address} "
                      f"as job {job_id}: {entrypoint}\n".encode())
        try:
            _call(self.address, lambda c: c.submit_job(entrypoint=entrypoint, submission_id=job_id,
                                                       runtime_env=runtime_env, metadata=meta, **kw))
        except ExecutorUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray's refusal (bad runtime_env, resources): the launch fails
            raise RuntimeError(f"the Ray cluster at {self.address} refused job {job_id}: {_one_line(exc)}") from None
        with _LOCK:
            _INFO.pop((self.address, job_id), None)  # "not known" was cached by _free_id
        return {"executor": self.name, "address": self.address, "job_id": job_id, "entrypoint": entrypoint,
                "resources": need, "argv": argv, "t": time.time()}

    def alive(self, run_dir: Path, record: dict) -> bool:
        try:
            info = job_info(record.get("address") or self.address, str(record["job_id"]))
        except ExecutorUnavailable:
            return True  # unknown while the cluster is away: not ended (nothing is marked failed)
        except KeyError:
            return False
        return info is not None and _status(info) in LIVE

    def stop(self, run_dir: Path, record: dict) -> None:
        addr = record.get("address") or self.address
        try:
            _call(addr, lambda c: c.stop_job(str(record["job_id"])))
        except (ExecutorUnavailable, RuntimeError, KeyError):
            pass

    def why_ended(self, run_dir: Path, record: dict) -> tuple[Status, str]:
        addr = record.get("address") or self.address
        job = record.get("job_id")
        try:
            info = job_info(addr, str(job))
        except ExecutorUnavailable as exc:
            return Status.INTERRUPTED, str(exc)
        if info is None:
            return Status.INTERRUPTED, (f"its Ray job {job} is not known to the cluster at {addr} (the cluster was "
                                        "restarted?) and the run wrote no final line")
        status = _status(info)
        logs = self._copy_logs(run_dir, record)
        node = self.node_of(record, run_dir) or "its node"
        for line in reversed(logs.splitlines()):
            if "cannot see the" in line:
                return Status.ERROR, line.removeprefix("error: ").strip()
        if status == "FAILED" and any(m.decode() in logs[-4096:] for m in OOM_MARKERS):
            return Status.ERROR, f"out of memory: its Ray job {job} on {node} needed more memory than it had"
        if status == "STOPPED":
            if (Path(run_dir) / STOP_FILE).exists():
                return Status.STOPPED, (f"its Ray job {job} was stopped (stop_job) after the {stop_grace_s():g} s grace "
                                        "period; Resume continues from the last checkpoint")
            return Status.INTERRUPTED, f"its Ray job {job} was stopped outside cnnviz (ray job stop, the dashboard)"
        why = f": {_one_line(Exception(info.message))}" if getattr(info, "message", None) else ""
        return Status.INTERRUPTED, (f"its Ray job {job} on {node} ended ({status}) without a final line: killed "
                                    f"(out of memory, kill -9), crashed, or its node went away{why}")

    # -------------------------------------------------------------- logs, nodes, capacity
    def log_tail(self, run_dir: Path, record: dict, lines: int = 20) -> str:
        """The last lines of the job's log (Ray's get_job_logs), '' when the cluster does not answer."""
        try:
            text = _call(record.get("address") or self.address, lambda c: c.get_job_logs(str(record["job_id"])))
        except (ExecutorUnavailable, RuntimeError, KeyError):
            return ""
        return "\n".join(str(text).splitlines()[-lines:])

    def _copy_logs(self, run_dir: Path, record: dict) -> str:
        """Once per job: append its Ray log to the run's log.txt (it outlives the cluster's job history)."""
        if record.get("log_copied"):
            return (Path(run_dir) / LOG_FILE).read_text(errors="replace")[-16384:] if (Path(run_dir) / LOG_FILE).exists() else ""
        try:
            text = str(_call(record.get("address") or self.address, lambda c: c.get_job_logs(str(record["job_id"]))))
        except (ExecutorUnavailable, RuntimeError):
            return ""
        try:
            with open(Path(run_dir) / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(f"== the log of Ray job {record['job_id']}:\n{text}\n")
            _update_record(run_dir, record, log_copied=True)
        except OSError:
            pass
        return text

    def node_of(self, record: dict, run_dir: Path | None = None) -> str | None:
        """Where the run's job runs (its driver node): 'name (node id…)'; once known it is recorded in
        `run_dir`'s launcher.json (as "node", "node_id")."""
        if record.get("node"):
            return str(record["node"])
        try:
            info = job_info(record.get("address") or self.address, str(record.get("job_id")))
            node_id = getattr(info, "driver_node_id", None) if info is not None else None
            if not node_id:
                return None
            nodes = {n["node_id"]: n for n in self.nodes()}
        except ExecutorUnavailable:
            return None
        n = nodes.get(node_id, {})
        where = f"{n.get('name') or n.get('ip') or 'node'} ({node_id[:8]})"
        if run_dir is not None:
            _update_record(run_dir, record, node=where, node_id=node_id)
        return where

    def nodes(self) -> list[dict]:
        """The cluster's alive nodes: {"node_id", "ip", "name", "head", "total": {"CPU", "GPU", "memory"}}."""
        from ray.util.state import list_nodes

        try:
            got = list_nodes(address=self.address, timeout=int(REQUEST_TIMEOUT_S), raise_on_missing_output=False)
        except Exception as exc:  # noqa: BLE001 - a connection error of any kind
            raise _went_down(self.address, exc) from None
        return [{"node_id": n.node_id, "ip": n.node_ip, "name": n.node_name, "head": bool(n.is_head_node),
                 "total": {k: float(n.resources_total.get(k, 0.0)) for k in ("CPU", "GPU", "memory")}}
                for n in got if n.state == "ALIVE"]

    def cluster(self, root: Path | None = None) -> dict:
        """Nodes with CPUs/GPUs total and free, and the cluster's totals: free = a node's resources less
        what the live jobs placed on it reserve (a job still PENDING reserves on the node with most room;
        a cnnviz run of `root` that wrote its final line no longer counts, its job is ending).
        ExecutorUnavailable when the cluster did not answer."""
        nodes = self.nodes()
        jobs = _call(self.address, lambda c: c.list_jobs())
        for n in nodes:
            n["free"] = dict(n["total"])
            n["jobs"] = 0
        by_id = {n["node_id"]: n for n in nodes}
        for j in jobs:
            if _status(j) not in LIVE or _ended_run(j, root):
                continue
            need = _reserved(j)
            n = by_id.get(getattr(j, "driver_node_id", None) or "") if _status(j) == "RUNNING" else None
            if n is None and nodes:
                n = max(nodes, key=lambda x: (x["free"]["GPU"] if need["GPU"] else 0, x["free"]["CPU"]))
            if n is not None:
                n["jobs"] += 1
                for k, v in need.items():
                    n["free"][k] -= v
        total = {k: sum(n["total"][k] for n in nodes) for k in ("CPU", "GPU")}
        free = {k: sum(max(0.0, n["free"][k]) for n in nodes) for k in ("CPU", "GPU")}
        return {"address": self.address, "nodes": nodes, "total": total, "free": free}

    def _cluster_gpus(self) -> float:
        """The cluster's GPUs (for a run on device "auto": it takes one where there are any)."""
        return sum(n["total"]["GPU"] for n in self.nodes())

    def _free_id(self, run_id: str) -> str:
        """The run id, or for a later attempt (a resume) `<run id>-2`, `-3`, ...: Ray's job ids are unique."""
        job_id, n = run_id, 1
        while job_info(self.address, job_id, fresh=True) is not None:
            n += 1
            job_id = f"{run_id}-{n}"
        return job_id


def _update_record(run_dir: Path, record: dict, **fields) -> None:
    """Add `fields` to the run's launcher.json (re-read first: two writers keep each other's fields)."""
    rec = read_json(Path(run_dir) / LAUNCHER_FILE)
    if not isinstance(rec, dict) or rec.get("job_id") != record.get("job_id"):
        return  # a newer attempt's record
    try:
        write_json(Path(run_dir) / LAUNCHER_FILE, {**rec, **fields})
    except OSError:
        pass
    record.update(fields)


def _reserved(job) -> dict[str, float]:
    """What a live job reserves: a cnnviz job says so in its metadata (Ray's job list does not carry a
    job's entrypoint resources); another job counts as nothing (Ray keeps ours PENDING if it must)."""
    meta = getattr(job, "metadata", None) or {}
    out = {}
    for k in ("CPU", "GPU", "memory"):
        try:
            out[k] = float(meta.get(f"cnnviz_{k.lower()}") or 0.0)
        except ValueError:
            out[k] = 0.0
    return out


def _ended_run(job, root: Path | None) -> bool:
    """Whether `job` is a cnnviz run under `root` that already wrote its final line (its job is ending)."""
    meta = getattr(job, "metadata", None) or {}
    if root is None or not meta.get("run_id") or meta.get("runs") != str(Path(root).resolve()):
        return False
    return has_ended(Path(root) / meta["run_id"])


def fits(need: dict[str, float], nodes: list[dict]) -> dict | None:
    """The node (of `cluster()["nodes"]`) with room for `need` now, taking it from its free resources; None."""
    for n in sorted(nodes, key=lambda x: -x["free"]["CPU"]):
        if all(n["free"].get(k, 0.0) >= v - 1e-9 for k, v in need.items() if v):
            for k, v in need.items():
                n["free"][k] = n["free"].get(k, 0.0) - v
            return n
    return None


def check_node(run_dir: Path | None) -> str | None:
    """In a run's job, before training: None when this node sees the run's directory (the token written
    there at submit) and the data folder, else the one-line problem (the job then ends with it)."""
    token = os.environ.get("CNNVIZ_NODE_CHECK")
    if not token or run_dir is None:
        return None
    host = socket.gethostname()
    if _read(Path(run_dir) / TOKEN_FILE) != token:
        return (f"node {host} cannot see the runs folder {Path(run_dir).parent} (CNNVIZ_RUNS must be on storage "
                "every Ray node mounts at the same path, e.g. NFS)")
    data = os.environ.get("CNNVIZ_DATA", "")
    if os.environ.get("CNNVIZ_NODE_CHECK_DATA") and not Path(data).is_dir():
        return (f"node {host} cannot see the data folder {data} (CNNVIZ_DATA must be on storage every Ray node "
                "mounts at the same path)")
    return None


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""
