"""Sign-in (`st.login`) through `python -m cnnviz serve --workers 2`, in Chromium (issue 26).

A real OpenID Connect provider on 127.0.0.1 (tests/oidc_provider.py), the launcher started by the
test with `--secrets FILE` whose `[auth] redirect_uri` is the PROXY's address (never a worker's
port: the provider sends the browser back there, and the proxy's affinity cookie takes the callback
to the worker that began the sign-in). Alice signs in through the proxy; her session's worker (the
CNNVIZ_SERVER cookie) is then killed with SIGKILL. The browser reconnects through the proxy to the
other worker, which never saw her sign in: she must still be signed in there (the sign-in cookie
signed by the first worker is valid on the second, because both read the same `[auth]
cookie_secret`), with no exception, and without asking the provider again. A reload (a fresh
session on that worker) says the same. Everything the test started ends with it (the launcher by
SIGTERM, checked by pid in tests/servetools.py; the provider is a thread of this process).
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from cnnviz.serve import free_port

from ..oidc_provider import running_provider
from ..servetools import launched, read_state, wait_for
from .server import exceptions, goto_via_sidebar, main_text, nav_href, sidebar_text, wait_idle
from .test_signin import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
RECOVER_S = 20.0

_CONNECTED_JS = """() => { const a = document.querySelector('[data-testid="stApp"]');
    return !!a && a.getAttribute('data-test-connection-state') === 'CONNECTED'; }"""


def _worker_of(context) -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == "CNNVIZ_SERVER"), None)


def _auth_cookies(context) -> dict[str, str]:
    """Streamlit's sign-in cookies (`_streamlit_user...`), signed with [auth] cookie_secret."""
    return {c["name"]: c["value"] for c in context.cookies() if c["name"].startswith("_streamlit_user")}


def _sessions_logged(run_dir, name: str) -> int:
    text = (run_dir / f"{name}.log").read_text(errors="replace")
    return len(re.findall(rf"cnnviz worker {name} \(pid \d+\): new session ", text))


def _signed_in_as_alice(page, where: str) -> None:
    side = sidebar_text(page)
    assert "Signed in as" in side and "Alice Student" in side, f"{where}: {side}"
    assert not exceptions(page), f"{where}: {exceptions(page)}"


def test_a_user_signed_in_through_the_proxy_stays_signed_in_when_their_worker_dies(browser, artifacts, tmp_path):
    run_dir = tmp_path / "serve"
    run_dir.mkdir()
    env = {"CNNVIZ_RUNS": str(tmp_path / "runs"), "CNNVIZ_DATA": str(tmp_path / "data"),
           "CNNVIZ_DESIGNS": str(tmp_path / "designs")}
    port = free_port()
    with running_provider() as idp:
        secrets = tmp_path / "secrets.toml"  # redirect_uri: the proxy's port, as the browser sees it
        secrets.write_text(idp.auth_toml().replace("{port}", str(port)))
        with launched(run_dir, workers=2, env=env, port=port, args=["--secrets", str(secrets)]) as (launcher, url):
            url = url.replace("127.0.0.1", "localhost")  # the provider accepts http://localhost:*/oauth2callback
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(60_000)
            try:
                page = context.new_page()
                page.goto(url)
                wait_idle(page, 180_000)
                first = _worker_of(context)
                assert first in ("w1", "w2"), context.cookies()
                sign_in(page, url, "alice")  # the provider's form, the redirect to the proxy, "Signed in as"
                assert idp.provider.logins == ["alice"]
                assert _worker_of(context) == first  # the callback reached the worker that began the sign-in
                signed = _auth_cookies(context)
                assert "_streamlit_user" in signed, list(signed)
                goto_via_sidebar(page, url, "convolution", 120_000)
                _signed_in_as_alice(page, f"on {first}")
                assert "Sign in to use this page" not in main_text(page)
                other = "w2" if first == "w1" else "w1"
                moved_before = _sessions_logged(run_dir, other)

                # SIGKILL the session's worker: the browser reconnects, through the proxy, to the other one
                pid = next(w["pid"] for w in read_state(run_dir)["workers"] if w["name"] == first)
                t0 = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda: _worker_of(context) == other, RECOVER_S, f"the session to move to {other}",
                         interval=0.05)
                page.wait_for_function(_CONNECTED_JS, timeout=int(RECOVER_S * 1000), polling=50)
                reconnected = time.monotonic() - t0

                # still Alice on the other worker, which never saw her sign in: a page change runs there
                page.locator(f'[data-testid="stSidebarNavLink"][href="{nav_href(url, "home")}"]').click()
                page.wait_for_url(nav_href(url, "home"))
                wait_idle(page, 120_000)
                _signed_in_as_alice(page, f"after the move to {other}")
                goto_via_sidebar(page, url, "convolution", 120_000)
                _signed_in_as_alice(page, f"on {other}, Convolution")
                assert "Sign in to use this page" not in main_text(page)
                assert _worker_of(context) == other
                assert _sessions_logged(run_dir, other) > moved_before  # the session really runs there now

                # a reload is a fresh session on that worker: signed in from the cookie alone
                page.reload()
                wait_idle(page, 120_000)
                _signed_in_as_alice(page, f"after a reload on {other}")
                assert _worker_of(context) == other
                assert idp.provider.logins == ["alice"]  # never sent back to the provider
                assert _auth_cookies(context) == signed  # the first worker's signed cookie, accepted as it is
                page.screenshot(path=str(artifacts / "browser-serving-signin-after-kill.png"))
                print(f"\nsigned in on {first}; {first} killed; reconnected to {other} after {reconnected:.1f} s, "
                      f"still signed in")
            finally:
                context.close()
        assert "exited with signal SIGKILL" in (run_dir / "launcher.log").read_text()
    assert launcher.returncode == 0
