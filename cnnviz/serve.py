"""`python -m cnnviz serve --workers N --port P`: N `streamlit run app.py` processes behind HAProxy.

One Streamlit process runs every session's script in threads of one interpreter, so a class of
students queues behind itself. This launcher starts N worker processes (`streamlit run app.py`,
each on a free port of 127.0.0.1) and HAProxy in front of them on ADDRESS:P (127.0.0.1 unless
`--address`), configured from `deploy/haproxy.cfg.template`: session affinity by a cookie (a
browser session's websocket, pictures and uploads all go to its worker), health checks of
`/_stcore/health`, and a dead worker's sessions sent to a live one. It then watches them: a
worker that exits is started again on its port (with a growing pause if it keeps dying at once),
so HAProxy's health check brings it back; so is HAProxy. Ctrl-C (SIGINT) or SIGTERM stops them
all together: SIGTERM to each child's process group (each child leads its own), SIGKILL to the
groups still alive 10 s later. On Linux each child also gets SIGTERM if the launcher itself dies.

Everything goes into the run folder (`--dir`, else a new temporary folder removed at exit):
`haproxy.cfg`, `haproxy.log`, `wI.log` per worker, and `state.json` (rewritten atomically on
every change: the launcher's pid, the URL, `ready`, HAProxy's and each worker's pid and port).

All workers share one `server.cookieSecret` (a random one per launch unless
STREAMLIT_SERVER_COOKIE_SECRET is set) and read the same secrets (`--secrets FILE`, else
`.streamlit/secrets.toml`), so a cookie signed by one (sign-in with `st.login`, whose `[auth]
cookie_secret` takes precedence) is valid on all. `[auth] redirect_uri` must be the proxy's address
as the browser sees it: a `{port}` in it is refused, since each worker would fill in its own port. Each worker has CNNVIZ_WORKER=wI in its environment: app.py logs one line per new session
with it, and HAProxy adds `X-Served-By: wI` to every response.

No streamlit import here (the backend never imports it): workers are subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
TEMPLATE = ROOT / "deploy" / "haproxy.cfg.template"
COOKIE = "CNNVIZ_SERVER"
HEALTH = "/_stcore/health"
MAX_WORKERS = 64
STOP_GRACE_S = 10.0
START_TIMEOUT_S = 180.0
QUICK_DEATH_S = 10.0      # a worker that dies sooner than this after its start is restarted after a pause
MAX_BACKOFF_S = 30.0


class ServeError(Exception):
    """Bad input or a start that cannot succeed: one line for the user."""


# ------------------------------------------------------------------ sign-in secrets


def check_secrets(path: Path | None, port: int) -> None:
    """The secrets file the workers will read (`--secrets`, else `.streamlit/secrets.toml` next to
    app.py): ServeError when it is not TOML, or when its `[auth] redirect_uri` contains `{port}`.
    Streamlit fills that in with the server's own port, which behind the proxy is a worker's
    (never reachable by a browser), so the provider would send users nowhere."""
    import tomllib

    if path is None:
        path = ROOT / ".streamlit" / "secrets.toml"
        if not path.is_file():
            return
    elif not path.is_file():
        raise ServeError(f"no secrets file at {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ServeError(f"cannot read {path} as TOML: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    auth = data.get("auth")
    redirect = auth.get("redirect_uri") if isinstance(auth, dict) else None
    if isinstance(redirect, str) and "{port}" in redirect:
        raise ServeError(f"[auth] redirect_uri in {path} contains {{port}}, which each worker would fill in with "
                         f"its own port: write the proxy's address as the browser sees it, e.g. "
                         f"http://localhost:{port}/oauth2callback")


# ------------------------------------------------------------------ the proxy's configuration


def render_config(template: str, *, address: str, port: int, workers: list[tuple[str, int]],
                  stats_socket: str) -> str:
    """The HAProxy configuration for these workers ((name, port) on 127.0.0.1): the template with
    its {{address}}, {{port}}, {{servers}}, {{stats_socket}} fields filled in. Every field must be
    used and none may be left over, so a template edited by hand fails here, not in HAProxy."""
    servers = "\n".join(f"    server {name} 127.0.0.1:{p} check cookie {name}" for name, p in workers)
    fields = {"address": _haproxy_address(address), "port": str(port), "servers": servers,
              "stats_socket": stats_socket}
    out = template
    for key, value in fields.items():
        marker = "{{" + key + "}}"
        if marker not in out:
            raise ServeError(f"the proxy template has no {marker} field")
        out = out.replace(marker, value)
    if "{{" in out:
        left = out[out.index("{{"):].split("}}")[0] + "}}"
        raise ServeError(f"the proxy template has an unknown field {left}")
    return out


def _haproxy_address(address: str) -> str:
    """An IPv6 address needs brackets in a `bind` line; names and IPv4 do not."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def check_config(haproxy: str, cfg: Path) -> None:
    """`haproxy -c`: ServeError with HAProxy's first complaint when the file is not valid."""
    res = subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr + res.stdout).splitlines() if "ALERT" in ln] or \
                (res.stderr + res.stdout).splitlines() or ["(no message)"]
        raise ServeError(f"HAProxy refuses {cfg}: {lines[0].strip()}")


# ------------------------------------------------------------------ small helpers


def free_port(address: str = "127.0.0.1") -> int:
    """A port the OS says is free now on `address` (another process could take it before us)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _check_bindable(address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port))
    except OSError as exc:
        raise ServeError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when GET url + /_stcore/health answers 200."""
    try:
        with urllib.request.urlopen(url + HEALTH, timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the launcher dies, so no worker outlives
    a launcher that was killed with SIGKILL. Elsewhere nothing (stop() still ends them)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's process group (it leads one: start_new_session), SIGKILL after `grace`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"


# ------------------------------------------------------------------ the launcher


@dataclass
class Child:
    """One supervised process: a worker (name wI, its port) or HAProxy (name 'proxy')."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    port: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    starts: int = 0
    backoff: float = 0.0
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            out.write(f"\n== cnnviz serve: starting {self.name} ({time.strftime('%H:%M:%S')})\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.started = time.monotonic()
        self.starts += 1
        self.restart_at = None
        self.pids.append(self.proc.pid)


class Launcher:
    """Starts the workers and the proxy, keeps them alive, stops them together."""

    def __init__(self, *, workers: int, port: int, address: str = "127.0.0.1", run_dir: Path,
                 haproxy: str, template: Path = TEMPLATE, app: Path = APP, secrets_file: Path | None = None,
                 echo=print) -> None:
        self.n, self.port, self.address, self.secrets_file = workers, port, address, secrets_file
        self.dir, self.haproxy, self.template, self.app = run_dir, haproxy, template, app
        self.echo = echo
        self.url = f"http://{_haproxy_address(address) if ':' in address else address}:{port}"
        self.workers: list[Child] = []
        self.proxy: Child | None = None
        self.ready = False
        self.stopping = threading.Event()

    # -- set-up
    def _worker_env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env["CNNVIZ_WORKER"] = name
        env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", self._secret)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def prepare(self) -> None:
        """Pick ports, write haproxy.cfg and check it with `haproxy -c`; start nothing yet."""
        _check_bindable(self.address, self.port)
        self._secret = secrets.token_hex(32)
        used = {self.port}
        for i in range(1, self.n + 1):
            p = free_port()
            while p in used:
                p = free_port()
            used.add(p)
            name = f"w{i}"
            argv = [sys.executable, "-m", "streamlit", "run", str(self.app),
                    "--server.address", "127.0.0.1", "--server.port", str(p), "--server.headless", "true",
                    "--browser.serverAddress", self.address if self.address not in ("0.0.0.0", "::") else
                    "localhost", "--browser.serverPort", str(self.port)]
            if self.secrets_file is not None:  # every worker the same file: one [auth] cookie_secret
                argv += ["--secrets.files", str(self.secrets_file.resolve())]
            self.workers.append(Child(name, argv, self.dir / f"{name}.log", self._worker_env(name), p))
        text = render_config(self.template.read_text(), address=self.address, port=self.port,
                             workers=[(w.name, w.port) for w in self.workers],
                             stats_socket=str(self.dir / "haproxy.sock"))
        cfg = self.dir / "haproxy.cfg"
        atomic_write_bytes(cfg, text.encode())
        check_config(self.haproxy, cfg)
        self.proxy = Child("proxy", [self.haproxy, "-db", "-f", str(cfg)], self.dir / "haproxy.log",
                           dict(os.environ), self.port)

    def write_state(self) -> None:
        def one(c: Child) -> dict:
            alive = c.proc is not None and c.proc.poll() is None
            return {"name": c.name, "pid": c.proc.pid if alive else None, "port": c.port, "log": str(c.log),
                    "starts": c.starts, "pids": c.pids}

        state = {"pid": os.getpid(), "url": self.url, "ready": self.ready, "stopping": self.stopping.is_set(),
                 "dir": str(self.dir), "proxy": one(self.proxy) if self.proxy else None,
                 "workers": [one(w) for w in self.workers]}
        atomic_write_bytes(self.dir / "state.json", (json.dumps(state, indent=1) + "\n").encode())

    # -- running
    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start every worker and the proxy; return when the proxy answers healthy."""
        for w in self.workers:
            w.start()
            self.echo(f"worker {w.name}: pid {w.proc.pid} on 127.0.0.1:{w.port} (log {w.log})")
        self.proxy.start()
        self.echo(f"HAProxy: pid {self.proxy.proc.pid} on {self.url} (config {self.dir / 'haproxy.cfg'})")
        self.write_state()
        deadline = time.monotonic() + timeout
        waiting = list(self.workers)
        while waiting:
            if self.stopping.is_set():
                return
            for c in [*self.workers, self.proxy]:
                if c.proc.poll() is not None:
                    raise ServeError(f"{c.name} exited with {_exit_text(c.proc.returncode)} while starting; "
                                     f"see {c.log}")
            waiting = [w for w in waiting if not healthy(f"http://127.0.0.1:{w.port}", timeout=1)]
            if time.monotonic() > deadline:
                raise ServeError(f"{', '.join(w.name for w in waiting)} not healthy after {timeout:.0f} s; "
                                 f"see {waiting[0].log}")
            if waiting:
                self.stopping.wait(0.3)
        while not healthy(self.url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]"), timeout=1):
            if self.proxy.proc.poll() is not None or time.monotonic() > deadline:
                raise ServeError(f"HAProxy does not answer on {self.url}; see {self.proxy.log}")
            if self.stopping.wait(0.2):
                return
        self.ready = True
        self.write_state()
        self.echo(f"ready: {self.url} ({self.n} worker{'s' if self.n > 1 else ''}). Ctrl-C stops them all.")

    def tick(self) -> None:
        """One supervision step: notice exits, restart what is due."""
        now = time.monotonic()
        changed = False
        for c in [self.proxy, *self.workers]:
            if c.proc is None:
                continue
            if c.restart_at is None and c.proc.poll() is not None:
                lived = now - c.started
                c.backoff = min(MAX_BACKOFF_S, max(1.0, c.backoff * 2)) if lived < QUICK_DEATH_S else 0.0
                c.restart_at = now + c.backoff
                self.echo(f"{c.name} (pid {c.proc.pid}) exited with {_exit_text(c.proc.returncode)} after "
                          f"{lived:.0f} s; restarting it" + (f" in {c.backoff:.0f} s" if c.backoff else ""))
                changed = True
            if c.restart_at is not None and now >= c.restart_at and not self.stopping.is_set():
                c.start()
                self.echo(f"{c.name}: restarted, pid {c.proc.pid} (start {c.starts})")
                changed = True
        if changed:
            self.write_state()

    def run_forever(self) -> None:
        while not self.stopping.is_set():
            self.tick()
            self.stopping.wait(0.2)

    def stop(self) -> None:
        """End every child: the proxy first (no new requests), then the workers, in parallel."""
        self.stopping.set()
        self.ready = False
        children = [c for c in [self.proxy, *self.workers] if c is not None and c.proc is not None]
        threads = [threading.Thread(target=_stop_group, args=(c.proc, STOP_GRACE_S)) for c in children]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.dir.exists():
            self.write_state()


# ------------------------------------------------------------------ command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="Streamlit processes behind the proxy (default 2)")
    p.add_argument("--port", type=int, default=8501, help="the proxy's port (default 8501)")
    p.add_argument("--address", default="127.0.0.1",
                   help="the proxy's address (default 127.0.0.1; 0.0.0.0 for every interface: put TLS in front)")
    p.add_argument("--dir", type=Path, default=None,
                   help="run folder for haproxy.cfg, logs and state.json (default: a temporary one, removed at exit)")
    p.add_argument("--haproxy", default=None, help="the haproxy program (default: haproxy on PATH)")
    p.add_argument("--template", type=Path, default=TEMPLATE, help="the proxy configuration template")
    p.add_argument("--secrets", type=Path, default=None,
                   help="the secrets.toml every worker reads ([auth] for sign-in; default: .streamlit/secrets.toml "
                        "next to app.py). Its redirect_uri must be the proxy's address, not {port}")


def _say(text: str) -> None:
    print(f"cnnviz serve: {text}", flush=True)


def main(args: argparse.Namespace) -> int:
    """`python -m cnnviz serve`: exit 0 after Ctrl-C/SIGTERM, 2 on bad input or a failed start."""
    try:
        if not 1 <= args.workers <= MAX_WORKERS:
            raise ServeError(f"--workers must be between 1 and {MAX_WORKERS}, not {args.workers}")
        if not 1 <= args.port <= 65535:
            raise ServeError(f"--port must be between 1 and 65535, not {args.port}")
        haproxy = args.haproxy or shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
        if not haproxy or not Path(haproxy).exists():
            raise ServeError("haproxy not found: install it (sudo apt-get install haproxy) or pass --haproxy PATH")
        if not args.template.is_file():
            raise ServeError(f"no proxy template at {args.template}")
        if not APP.is_file():
            raise ServeError(f"no app at {APP}")
        check_secrets(args.secrets, args.port)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cnnviz-serve-")
        run_dir = Path(tmp.name)
    else:
        run_dir = args.dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"error: cannot make {run_dir}: {exc.strerror}", file=sys.stderr)
            return 2
    launcher = Launcher(workers=args.workers, port=args.port, address=args.address, run_dir=run_dir,
                        haproxy=haproxy, template=args.template, secrets_file=args.secrets, echo=_say)

    def on_signal(signum, frame):
        launcher.stopping.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        launcher.prepare()
        launcher.start()
        launcher.run_forever()
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        code = 2
    finally:
        if launcher.workers or launcher.proxy:
            _say("stopping the proxy and the workers")
        launcher.stop()
        for s, h in old.items():
            signal.signal(s, h)
        if tmp is not None:
            tmp.cleanup()
    if code == 0:
        _say("all stopped")
    return code
