"""`python -m cnnviz serve`: the HAProxy configuration, bad input, and the launcher over plain HTTP
(no browser: tests/browser/test_serving.py drives sessions through it in Chromium).

The real HAProxy from the distribution and real `streamlit run app.py` workers; waits are for
conditions (state.json, HTTP answers), never fixed sleeps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cnnviz import serve

from .servetools import ROOT, alive, all_pids, get, launched, read_state, require_haproxy, wait_for


def _render(**kw):
    args = dict(address="127.0.0.1", port=8501, workers=[("w1", 40001), ("w2", 40002)],
                stats_socket="/tmp/x.sock")
    args.update(kw)
    return serve.render_config(serve.TEMPLATE.read_text(), **args)


def test_the_shipped_template_renders_every_worker_and_haproxy_accepts_it(tmp_path):
    haproxy = require_haproxy()
    text = _render(stats_socket=str(tmp_path / "h.sock"))
    assert "{{" not in text
    assert "bind 127.0.0.1:8501" in text
    assert "server w1 127.0.0.1:40001 check cookie w1" in text
    assert "server w2 127.0.0.1:40002 check cookie w2" in text
    assert "cookie CNNVIZ_SERVER insert" in text and "uri /_stcore/health" in text
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    serve.check_config(haproxy, cfg)  # raises with HAProxy's complaint when invalid
    cfg.write_text(text.replace("balance leastconn", "balance no-such-algorithm"))
    with pytest.raises(serve.ServeError, match="HAProxy refuses"):
        serve.check_config(haproxy, cfg)


def test_ipv6_addresses_get_brackets_in_the_bind_line():
    assert "bind [::1]:9000" in _render(address="::1", port=9000)


def test_a_template_with_a_missing_or_unknown_field_is_refused():
    good = serve.TEMPLATE.read_text()
    with pytest.raises(serve.ServeError, match="no {{servers}} field"):
        serve.render_config(good.replace("{{servers}}", ""), address="127.0.0.1", port=1,
                            workers=[("w1", 2)], stats_socket="s")
    with pytest.raises(serve.ServeError, match="unknown field {{nope}}"):
        serve.render_config(good + "\n# {{nope}}\n", address="127.0.0.1", port=1, workers=[("w1", 2)],
                            stats_socket="s")


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnviz", "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be between 1 and 64, not 0"),
    (["--port", "70000"], "--port must be between 1 and 65535"),
    (["--haproxy", "/nonexistent/haproxy"], "haproxy not found"),
])
def test_bad_arguments_get_one_line_and_exit_code_2(args, message):
    res = _serve(*args)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(tmp_path):
    require_haproxy()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = _serve("--port", str(port), "--dir", str(tmp_path))
    assert res.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "Traceback" not in res.stderr
    assert "\n" not in res.stderr.strip()
    assert not (tmp_path / "w1.log").exists()  # no worker was started


def test_secrets_the_workers_cannot_use_behind_the_proxy_are_refused_in_one_line(tmp_path):
    """`--secrets FILE`: missing, not TOML, or an [auth] redirect_uri with {port} (each worker would
    fill in its own port, which no browser can reach) — one line, exit 2, nothing started."""
    require_haproxy()
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[auth\nredirect_uri = 1\n")
    templated = tmp_path / "port.toml"
    templated.write_text('[auth]\nredirect_uri = "http://localhost:{port}/oauth2callback"\ncookie_secret = "x"\n')
    for secrets, message in ((tmp_path / "none.toml", "no secrets file at"), (bad_toml, "as TOML"),
                             (templated, "contains {port}, which each worker would fill in")):
        res = _serve("--port", "18555", "--dir", str(tmp_path / "run"), "--secrets", str(secrets))
        assert res.returncode == 2, res.stderr
        assert message in res.stderr and "\n" not in res.stderr.strip() and "Traceback" not in res.stderr, res.stderr
    assert "http://localhost:18555/oauth2callback" in res.stderr  # the address to write instead
    assert not (tmp_path / "run" / "w1.log").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_launcher_balances_keeps_affinity_restarts_a_killed_worker_and_stops_everything(tmp_path):
    with launched(tmp_path, workers=2, env={"CNNVIZ_RUNS": str(tmp_path / "runs")}) as (proc, url):
        # a new visitor (no cookie) gets a worker and its cookie; leastconn spreads new visitors
        # (on a loaded machine a worker's health check may still be passing when the launcher is ready,
        # and the proxy sends everyone to the other until it is up: ask until both have answered)
        seen = {}
        deadline = time.time() + 60
        while len(seen) < 2 or sum(seen.values()) < 6:
            status, h = get(url, "/")
            assert status == 200
            assert h["set-cookie"].startswith(f"CNNVIZ_SERVER={h['x-served-by']};"), h
            seen[h["x-served-by"]] = seen.get(h["x-served-by"], 0) + 1
            if time.time() > deadline:
                break
        assert set(seen) == {"w1", "w2"}, seen
        # affinity: with the cookie, always the same worker, and no new cookie
        for name in ("w1", "w2"):
            for _ in range(5):
                status, h = get(url, "/", cookie=name)
                assert (status, h["x-served-by"]) == (200, name) and "set-cookie" not in h
        # SIGKILL w1: its visitors are answered by w2 at once (and their cookie rewritten) ...
        state = read_state(tmp_path)
        w1 = next(w for w in state["workers"] if w["name"] == "w1")
        os.kill(w1["pid"], signal.SIGKILL)
        wait_for(lambda: not alive(w1["pid"]), 10, "w1 to die")
        status, h = get(url, "/", cookie="w1")
        assert status == 200 and h["x-served-by"] == "w2" and h["set-cookie"].startswith("CNNVIZ_SERVER=w2;")
        # ... and the launcher starts w1 again on its port; the proxy sends w1's cookie there again
        def w1_again():
            s = read_state(tmp_path)
            return next((w for w in s["workers"] if w["name"] == "w1" and w["starts"] == 2 and w["pid"]),
                        None) if s else None

        restarted = wait_for(w1_again, 30, "the launcher to restart w1")
        assert restarted["pid"] != w1["pid"] and restarted["port"] == w1["port"]
        wait_for(lambda: get(url, "/", cookie="w1")[1].get("x-served-by") == "w1", 180,
                 "the restarted w1 to serve its cookie again")
        assert "w1 (pid %d) exited with signal SIGKILL" % w1["pid"] in (tmp_path / "launcher.log").read_text()
        pids = all_pids(read_state(tmp_path))
        assert len(pids) == 4 and all(alive(p) for p in pids if p != w1["pid"])
    # launched() sent SIGTERM and checked the exit code and that no recorded pid is alive
    assert proc.returncode == 0
    assert not any(alive(p) for p in pids)
    assert read_state(tmp_path)["ready"] is False
