"""AppTests of the pages with sign-in configured (`[auth]` in the secrets, `st.user` as Streamlit fills
it from the identity cookie): who sees what on Train, Runs and the Class board; signed out, expired,
and a broken [auth] section. The real sign-in through a provider is in tests/browser/test_signin.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnviz.runs import LAST_WEIGHTS, queue
from cnnviz.runs.layout import OWNER_FILE, write_json
from cnnviz.runs.quotas import quota_of
from cnnviz.train import TrainConfig
from cnnviz.users import from_claims, remember

from .pagetest import page_path
from .runtools import fake_run, runs_root, sleeper  # noqa: F401  (fixture)

ISS = "http://127.0.0.1:9/test-idp"
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "cnnviz", "client_secret": "s3cret", "server_metadata_url": f"{ISS}/.well-known/openid-configuration"}
TINY = dict(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu", limit_train=64, limit_test=32)


def claims(name: str, **kw) -> dict:
    now = int(time.time())
    return {"is_logged_in": True, "iss": ISS, "sub": f"sub-{name}", "email": f"{name}@school.test",
            "name": name.title(), "email_verified": True, "iat": now, "auth_time": now, "exp": now + 3600, **kw}


def user_of(name: str):
    return from_claims(claims(name))


@pytest.fixture(autouse=True)
def _env(runs_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CNNVIZ_ADMINS", "teacher@school.test")
    return runs_root


def page(name: str, who: dict | None, auth: dict | None = AUTH, run: bool = True) -> AppTest:
    at = AppTest.from_file(page_path(name), default_timeout=90)
    if auth is not None:
        at.secrets["auth"] = auth
    at.user = who if who is not None else {"is_logged_in": False}
    if run:
        at.run()
        assert not at.exception, at.exception
    return at


def ended(root: Path, name: str, owner: str, acc: float) -> Path:
    lines = [{"kind": "start", "device": "cpu", "device_type": "cpu"},
             {"kind": "epoch", "epoch": 1, "test_acc": acc, "train_acc": acc, "elapsed_s": 5.0},
             {"kind": "done", "status": "finished"}]
    d = fake_run(root, name, lines, TrainConfig(**TINY).to_dict())
    (d / LAST_WEIGHTS).write_bytes(b"w")
    write_json(d / OWNER_FILE, {"owner": owner, "visitor": owner})
    return d


def frame(at: AppTest, column: str):
    """The first dataframe on the page with `column` (AppTest finds dataframes by position, not key)."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a {column!r} column"
    return found[0]


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)


def test_signed_out_a_page_shows_only_sign_in(runs_root):  # noqa: F811
    for name in ("training", "runs", "class_board"):
        at = page(name, None)
        assert [b.label for b in at.button] == ["Sign in"]
        assert any("Sign in to use this page" in i.value for i in at.info)
        assert not at.get("form") and not at.dataframe


def test_an_expired_sign_in_asks_again_and_the_queued_run_stays(runs_root):  # noqa: F811
    alice = user_of("alice")
    run = queue.submit(TrainConfig(**TINY), runs_root, by=alice, dispatch_now=False)
    old = int(time.time()) - 13 * 3600  # CNNVIZ_SIGNIN_HOURS defaults to 12
    at = page("training", claims("alice", iat=old, auth_time=old))
    assert any("sign-in has expired" in w.value for w in at.warning)
    assert [b.label for b in at.button] == ["Sign in"]
    assert run.is_dir() and queue.position(run) == 1
    at = page("training", claims("alice"))  # signed in again
    assert any(run.name in m.value for m in at.markdown)


def test_a_broken_auth_section_says_which_key_and_opens_nothing(runs_root):  # noqa: F811
    for bad, key in (({**AUTH, "cookie_secret": None}, "cookie_secret is missing"),
                     ({k: v for k, v in AUTH.items() if k != "redirect_uri"}, "redirect_uri is missing"),
                     ({**AUTH, "server_metadata_url": "idp.school.test"}, "server_metadata_url must be an http(s)"),
                     ({k: v for k, v in AUTH.items() if k != "client_secret"}, "client_secret is missing")):
        bad = {k: v for k, v in bad.items() if v is not None}
        at = page("training", claims("alice"), auth=bad)
        errs = [e.value for e in at.error]
        assert len(errs) == 1 and key in errs[0] and "\n" not in errs[0], errs
        assert not at.get("form")  # no fallback to the local app


def test_a_student_sees_and_manages_only_their_runs_and_the_queue_anonymised(runs_root):  # noqa: F811
    alice, bob, carol = user_of("alice"), user_of("bob"), user_of("carol")
    mine = ended(runs_root, "20260101-000000-lenet5-shapes-alice", alice.id, 0.5)
    theirs = ended(runs_root, "20260101-000001-lenet5-shapes-bob", bob.id, 0.6)
    busy = fake_run(runs_root, "20260101-000002-lenet5-shapes-busy", [{"kind": "start"}], pid=sleeper())
    write_json(busy / OWNER_FILE, {"owner": bob.id})  # bob's run trains: the one slot is taken
    for u in (bob, carol, bob):
        queue.submit(TrainConfig(**TINY), runs_root, by=u, dispatch_now=False)
    waiting = queue.submit(TrainConfig(**TINY), runs_root, by=alice, dispatch_now=False)
    at = page("training", claims("alice"))
    shown = "\n".join(m.value for m in at.markdown)
    assert mine.name in shown and waiting.name in shown and theirs.name not in shown and busy.name not in shown
    assert "4 run(s) waiting, from 3 people; 2 run(s) ahead of yours, from 2 people" in shown
    keys = {b.key for b in at.button}
    assert f"train_delete_{mine.name}" in keys and f"train_cancel_{waiting.name}" in keys
    assert not any(theirs.name in k for k in keys) and "train_queue_pause" not in keys
    dl = [b for b in at.get("download_button")]
    assert dl and all(theirs.name not in str(b.proto) for b in dl)
    form_datasets = at.selectbox(key="train_dataset").options
    assert not any("folder or zip" in o for o in form_datasets)  # no server paths for students
    at = page("runs", claims("alice"))
    assert not at.exception and mine.name in str(at.multiselect(key="runs_compare").options)
    assert theirs.name not in str(at.multiselect(key="runs_compare").options)


def test_a_teacher_sees_everyone_with_names_and_can_pause_and_cancel_anything(runs_root):  # noqa: F811
    alice, bob = user_of("alice"), user_of("bob")
    for u in (alice, bob):
        remember(u, runs_root)
    theirs = ended(runs_root, "20260101-000001-lenet5-shapes-bob", bob.id, 0.6)
    fake_run(runs_root, "20260101-000002-lenet5-shapes-busy", [{"kind": "start"}], pid=sleeper())  # the slot
    waiting = queue.submit(TrainConfig(**TINY), runs_root, by=alice, dispatch_now=False)
    at = page("training", claims("teacher"))
    shown = "\n".join(m.value for m in at.markdown)
    assert f"{theirs.name}` · finished · Bob" in shown and f"{waiting.name}` · queued · Alice" in shown
    assert at.button(key=f"train_delete_{theirs.name}") is not None
    assert frame(at, "place")["owner"].tolist() == ["Alice"]
    at.button(key="train_queue_pause").click().run()
    assert queue.paused(runs_root) and at.button(key="train_queue_resume") is not None
    at.button(key=f"train_cancel_{waiting.name}").click().run()
    assert not at.exception and not waiting.exists()
    assert any("folder or zip" in o for o in at.selectbox(key="train_dataset").options)


def test_class_board_names_only_for_teachers_and_a_read_only_view(runs_root, monkeypatch):  # noqa: F811
    alice, bob = user_of("alice"), user_of("bob")
    for u in (alice, bob):
        remember(u, runs_root)
    a = ended(runs_root, "20260101-000000-lenet5-shapes-alice", alice.id, 0.55)
    b = ended(runs_root, "20260101-000001-lenet5-shapes-bob", bob.id, 0.65)
    at = page("class_board", claims("alice"))
    board = frame(at, "who")
    assert board["who"].tolist() == ["student 1", "you"] and board["run"].tolist() == [b.name, a.name]
    assert "Read-only: someone else's run" in texts(at)  # the best run, bob's, is open
    assert not at.get("download_button") and not any("delete" in (x.key or "") for x in at.button)
    at.button(key="class_train_this").click().run()
    assert at.session_state["train_epochs"] == 1 and at.session_state["train_model"] == "lenet5"
    monkeypatch.setenv("CNNVIZ_BOARD_NAMES", "1")
    at = page("class_board", claims("alice"))
    assert frame(at, "who")["who"].tolist() == ["Bob", "you"]
    monkeypatch.delenv("CNNVIZ_BOARD_NAMES")
    at = page("class_board", claims("teacher"))
    assert frame(at, "who")["who"].tolist() == ["Bob", "Alice"]
    usage = frame(at, "GPU hours")
    assert sorted(usage["person"].tolist()) == ["Alice", "Bob"] and usage["runs"].tolist() == [1, 1]
    at.selectbox(key="class_quota_user").set_value(alice.id)
    at.number_input(key="class_quota_max_queued").set_value(2)
    at.button(key="FormSubmitter:class_quota-Save quota").click().run()
    assert not at.exception and quota_of(alice.id, runs_root)["max_queued"] == 2


def test_without_auth_the_pages_are_the_local_app(runs_root):  # noqa: F811
    d = ended(runs_root, "20260101-000000-lenet5-shapes-x", "u-" + "0" * 32, 0.5)
    at = page("training", {}, auth=None)
    assert d.name in "\n".join(m.value for m in at.markdown) and not at.sidebar.button
    assert at.button(key=f"train_delete_{d.name}") is not None  # the local user may do everything
    at = page("class_board", {}, auth=None)
    assert frame(at, "who")["who"].tolist() == ["u-" + "0" * 32]
