"""Real sign-in in a real browser (issue 19): a small OpenID Connect provider on 127.0.0.1 (built on
Authlib's provider classes; tests/oidc_provider.py), the app started with `[auth]` pointing at it,
and Playwright signing in through the provider's login form and the real redirect. No mock of st.login.

Three browser contexts at once (alice, bob, the teacher) plus a signed-out visitor. Runs are held at
step 0 by their gate files (written while the teacher has the queue paused), so which run trains is
decided by the queue, never by timing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from cnnviz.runs import GATE_FILE, NotAllowed, Status, manage, queue, request_stop, summary
from cnnviz.users import known

from ..oidc_provider import password_of, running_provider
from ..runtools import kill_runs_under, wait_for
from .server import exceptions, main_text, pick_segment, running_app, sidebar_text, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
RUN_RE = r"\d{8}-\d{6}-lenet5-shapes-[0-9a-f]{16}"


@pytest.fixture
def signin_app(tmp_path, artifacts, browser, monkeypatch):
    """The app with [auth] pointing at a live provider; its own runs folder; one run at a time."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("CNNVIZ_ADMINS", "teacher@school.test")  # this process reads the registry too
    with running_provider() as idp:
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(idp.auth_toml())
        env = {"CNNVIZ_RUNS": str(runs), "CNNVIZ_ADMINS": "teacher@school.test", "CNNVIZ_MAX_RUNS": "1",
               "CNNVIZ_DATA": str(tmp_path / "data"), "CNNVIZ_DESIGNS": str(tmp_path / "designs")}
        try:
            with running_app(env, timeout=120, args=["--secrets.files", str(secrets)]) as url:
                yield url.replace("127.0.0.1", "localhost"), idp, runs  # redirect_uri says localhost
        finally:
            kill_runs_under(runs)


def _tab(browser, url: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    page.goto(url)
    wait_idle(page)
    return ctx, page


def to_provider(page, button) -> None:
    """Press a Sign in button until the provider's own page shows: on a loaded machine a click that
    lands while the page is still rerunning can be dropped by the browser, so it is pressed again."""
    for attempt in range(4):
        if page.locator('[data-testid="stApp"]').count():  # still on the app, not yet redirected
            wait_idle(page)
            if button.is_visible():
                button.click()
        try:
            page.wait_for_selector("#username", timeout=30_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; press again
            if attempt == 3:
                raise


def sign_in(page, url: str, name: str) -> None:
    """Through the sidebar's Sign in button, the provider's form, and the redirect back."""
    to_provider(page, page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign in"))
    assert "School sign-in" in page.content()
    page.fill("#username", name)
    page.fill("#password", password_of(name))
    page.click("#signin")
    page.wait_for_url(re.compile(re.escape(url) + r"/?$"), timeout=60_000)
    wait_idle(page)
    assert "Signed in as" in sidebar_text(page), sidebar_text(page)


def goto(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    wait_idle(page)
    assert not exceptions(page), exceptions(page)


def start_run(page, url: str) -> str:
    """Start training from the Train page's form (defaults, 256 training images); the new run's id."""
    goto(page, url, "train")
    known_ids = set(re.findall(RUN_RE, main_text(page)))
    start = page.get_by_role("button", name=re.compile("Start training"))
    if not start.is_visible():
        page.locator('[data-testid="stExpander"] summary').filter(has_text="New run").click()
        start.wait_for(state="visible")
    box = page.get_by_label("Train images (0 = all)", exact=True)
    box.fill("256")
    box.press("Tab")
    start.click()
    deadline = time.time() + 120
    while time.time() < deadline:
        new = set(re.findall(RUN_RE, main_text(page))) - known_ids
        if new:
            return new.pop()
        time.sleep(0.3)
    pytest.fail("no run appeared after Start training")


def press_stop(page, rid: str) -> None:
    """Stop a run from its Stop button (the live views slowed to 10 s: fewer redraws under the click)."""
    pick_segment(page, "train_refresh", "10 s")
    page.locator(f".st-key-train_stop_{rid}").get_by_role("button").click()
    wait_idle(page)


def status(runs: Path, rid: str) -> Status:
    return summary(runs / rid).status


def test_three_people_sign_in_own_their_runs_and_take_turns(signin_app, browser, artifacts):
    url, idp, runs = signin_app
    # a signed-out visitor: the home page and Sign in, nothing else
    ctx0, visitor = _tab(browser, url)
    assert not visitor.locator('[data-testid="stSidebarNavLink"]').count()
    assert "Sign in" in sidebar_text(visitor) and "cnnviz" in main_text(visitor)
    goto(visitor, url, "train")
    assert "Sign in to use this page" in main_text(visitor) and "Start training" not in main_text(visitor)

    tabs = {}
    for name in ("alice", "bob", "teacher"):
        tabs[name] = _tab(browser, url)
        sign_in(tabs[name][1], url, name)
    alice, bob, teacher = (tabs[n][1] for n in ("alice", "bob", "teacher"))
    assert idp.provider.logins == ["alice", "bob", "teacher"]
    assert "teacher" in sidebar_text(teacher) and "teacher" not in sidebar_text(alice)

    # the teacher pauses the queue; the students queue B1, A1, A2, B2 (in that order)
    goto(teacher, url, "train")
    teacher.get_by_role("button", name="Pause the queue").click()
    wait_idle(teacher)
    assert queue.paused(runs)
    b1 = start_run(bob, url)
    a1 = start_run(alice, url)
    a2 = start_run(alice, url)
    b2 = start_run(bob, url)
    for rid in (b1, a1, a2, b2):
        (runs / rid / GATE_FILE).write_text("0")  # each holds before its first step once started
        assert status(runs, rid) == Status.QUEUED
    people = {u.email: u for u in known(runs).values()}
    a_user, b_user = people["alice@school.test"], people["bob@school.test"]
    assert not a_user.is_admin and people["teacher@school.test"].is_admin

    # each sees their own runs only; the queue anonymised
    goto(alice, url, "train")
    text = main_text(alice)
    assert a1 in text and a2 in text and b1 not in text and b2 not in text
    assert "4 run(s) waiting, from 2 people" in text
    goto(bob, url, "train")
    text = main_text(bob)
    assert b1 in text and b2 in text and a1 not in text and a2 not in text

    # the teacher resumes: B1 trains (bob queued first)
    goto(teacher, url, "train")
    teacher.get_by_role("button", name="Resume the queue").click()
    wait_idle(teacher)
    wait_for(lambda: status(runs, b1).training, "bob's first run to start")
    assert status(runs, a1) == status(runs, a2) == status(runs, b2) == Status.QUEUED

    # bob stops his own run from its Stop button: alice's first run is next
    goto(bob, url, "train")
    press_stop(bob, b1)
    wait_for(lambda: status(runs, b1) == Status.STOPPED, "bob's run to stop")
    wait_for(lambda: status(runs, a1).training, "alice's first run to start")

    # bob: no button for alice's run, and the backend refuses a forged request with his identity
    goto(bob, url, "train")
    assert a1 not in main_text(bob) and not bob.locator(f".st-key-train_stop_{a1}").count()
    goto(bob, url, "runs")
    assert a1 not in main_text(bob)
    for forged in (lambda: request_stop(runs / a1, by=b_user), lambda: manage.checkpoint_bytes(runs / a1, by=b_user),
                   lambda: queue.cancel(runs / a2, by=b_user)):
        with pytest.raises(NotAllowed):
            forged()
    assert not (runs / a1 / "stop").exists() and status(runs, a2) == Status.QUEUED
    # bob's second run waits while alice's first trains, with where it stands
    goto(bob, url, "train")
    assert "yours is next" in main_text(bob)  # bob started least recently
    goto(alice, url, "train")
    assert "1 run(s) ahead of yours, from 1 person" in main_text(alice)
    assert status(runs, b2) == Status.QUEUED

    # the teacher sees everyone's runs with names, and stops alice's
    goto(teacher, url, "train")
    text = main_text(teacher)
    assert all(r in text for r in (a1, a2, b1, b2)) and "Alice" in text and "Bob" in text
    press_stop(teacher, a1)
    wait_for(lambda: status(runs, a1) == Status.STOPPED, "alice's first run to stop")
    # round-robin: bob's second run starts before alice's second, though queued after it
    wait_for(lambda: status(runs, b2).training, "bob's second run to start")
    assert status(runs, a2) == Status.QUEUED

    # the teacher deletes alice's stopped run; alice sees it gone
    goto(teacher, url, "train")
    teacher.locator(f".st-key-train_delete_{a1}").get_by_role("button").click()
    wait_idle(teacher)
    teacher.get_by_role("button", name="Yes, delete").click()
    wait_for(lambda: not (runs / a1).exists(), "the teacher's delete")
    goto(alice, url, "train")
    assert a1 not in main_text(alice) and a2 in main_text(alice)
    alice.screenshot(path=str(artifacts / "signin-alice-train.png"))
    teacher.screenshot(path=str(artifacts / "signin-teacher-train.png"))
    for ctx, _ in [tabs[n] for n in tabs] + [(ctx0, visitor)]:
        ctx.close()


@pytest.fixture
def short_signin_app(tmp_path, artifacts, browser):
    """The app with sign-ins that last 0.02 h (72 s): long enough to queue a run, short enough to wait out."""
    runs = tmp_path / "runs"
    with running_provider() as idp:
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(idp.auth_toml())
        env = {"CNNVIZ_RUNS": str(runs), "CNNVIZ_SIGNIN_HOURS": "0.02", "CNNVIZ_MAX_RUNS": "1"}
        try:
            with running_app(env, timeout=120, args=["--secrets.files", str(secrets)]) as url:
                yield url.replace("127.0.0.1", "localhost"), idp, runs
        finally:
            kill_runs_under(runs)


def test_an_expired_sign_in_asks_again_and_keeps_the_queued_run(short_signin_app, browser):
    url, idp, runs = short_signin_app
    queue.pause(runs)  # the command line pauses the queue: the run stays queued
    ctx, page = _tab(browser, url)
    sign_in(page, url, "alice")
    signed_at = time.time()
    rid = start_run(page, url)
    assert status(runs, rid) == Status.QUEUED

    def asks_again() -> bool:
        goto(page, url, "train")
        return "sign-in has expired" in main_text(page)

    wait_for(asks_again, "the sign-in to expire", timeout=240, every=3)
    assert time.time() - signed_at >= 0.02 * 3600 - 5
    assert rid not in main_text(page) and "Start training" not in main_text(page)
    to_provider(page, page.get_by_role("button", name="Sign in").first)
    page.fill("#username", "alice")
    page.fill("#password", password_of("alice"))
    page.click("#signin")
    page.wait_for_url(re.compile(re.escape(url) + r"/?$"))
    wait_idle(page)
    goto(page, url, "train")
    assert rid in main_text(page) and status(runs, rid) == Status.QUEUED
    assert idp.provider.logins == ["alice", "alice"]
    ctx.close()


def test_a_broken_auth_section_is_one_line_at_start_and_on_the_page(tmp_path, artifacts, browser):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:{port}/oauth2callback"\n'
                       'client_id = "x"\nclient_secret = "y"\n'
                       'server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"\n')
    with running_app({"CNNVIZ_RUNS": str(tmp_path / "runs")}, timeout=120,
                     args=["--secrets.files", str(secrets)]) as url:
        port = url.rsplit(":", 1)[1]
        log = (artifacts / f"streamlit-{port}.log").read_text()
        lines = [ln for ln in log.splitlines() if ln.startswith("cnnviz: sign-in")]
        assert lines == ["cnnviz: sign-in is configured but broken: [auth] in .streamlit/secrets.toml: "
                         "cookie_secret is missing (a random string of 16 characters or more, e.g. `python -c "
                         "\"import secrets; print(secrets.token_hex(32))\"`)."], log[-2000:]
        ctx, page = _tab(browser, url.replace("127.0.0.1", "localhost"))
        goto(page, url.replace("127.0.0.1", "localhost"), "train")
        text = main_text(page)
        assert "cookie_secret is missing" in text and "Start training" not in text  # closed, not open to all
        ctx.close()
