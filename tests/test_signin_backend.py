"""Sign-in in the backend (issue 19): users, who may manage a run, the fair queue, per-user limits,
quotas, per-user designs and uploads, the class board and usage; in sign-in mode (users from
OpenID Connect claims) and in local mode (the one local admin, and the trusted caller `by=None`).

Runs here are fake run directories (owner.json + metrics) unless the test is about dispatch, which
launches real run processes held at step 0 by their gate files and ends them with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from cnnviz import cli
from cnnviz.runs import (GATE_FILE, LAST_WEIGHTS, NotAllowed, Status, delete_run, fair, list_runs, manage, queue,
                         request_stop, summary, usage)
from cnnviz.runs.access import may_manage, mine, owner_of
from cnnviz.runs.layout import OWNER_FILE, STOP_FILE, write_json
from cnnviz.runs.quotas import LimitError, Limits, quota_of, set_quota, storage_of
from cnnviz.runs.liveness import read_launcher
from cnnviz.train import TrainConfig
from cnnviz.uploads import UploadError, dataset_allowed, list_uploads, save_upload, uploads_dir
from cnnviz.users import LOCAL, User, UserError, from_claims, is_user_id, known, remember, resolve, user_id

from .runtools import fake_run, runs_root, wait_for  # noqa: F401  (fixture)

ISS = "https://idp.school.test"
TINY = dict(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu", limit_train=64, limit_test=32)


@pytest.fixture
def people(monkeypatch):
    monkeypatch.setenv("CNNVIZ_ADMINS", "Teacher@School.test, other@school.test")
    mk = lambda n: from_claims({"iss": ISS, "sub": f"sub-{n}", "email": f"{n}@school.test",  # noqa: E731
                                "name": n.title(), "email_verified": True})
    return {n: mk(n) for n in ("alice", "bob", "teacher")}


def _ended_run(root: Path, name: str, owner: str | None, acc: float = 0.5, device: str = "cpu",
               epochs: int = 2, elapsed: float = 36.0) -> Path:
    cfg = TrainConfig(**{**TINY, "epochs": epochs}).to_dict()
    lines = [{"kind": "start", "device": device, "device_type": device, "world_size": 1}]
    lines += [{"kind": "epoch", "epoch": e, "test_acc": acc, "train_acc": acc, "elapsed_s": elapsed * e / epochs}
              for e in range(1, epochs + 1)]
    lines.append({"kind": "done", "status": "finished"})
    d = fake_run(root, name, lines, cfg)
    (d / LAST_WEIGHTS).write_bytes(b"weights of " + name.encode())
    if owner is not None:
        write_json(d / OWNER_FILE, {"owner": owner, "visitor": owner})
    return d


# ---------------------------------------------------------------- users

def test_a_user_id_is_a_safe_folder_name_whatever_the_provider_sends(people):
    odd = ["../../etc/passwd", "ü/../ñ", "x" * 10_000, "a\x00b", "", "sub-alice"]
    ids = {user_id(ISS, s) for s in odd} | {user_id("https://other.test", "sub-alice")}
    assert len(ids) == len(odd) + 1  # distinct, and issuer + sub, not sub alone
    for i in ids:
        assert is_user_id(i) and "/" not in i and len(i) == 34
    u = from_claims({"iss": ISS, "sub": "../..", "email": "e\u202e@x.test" + "y" * 500, "name": "../../" + "n" * 500})
    assert is_user_id(u.id) and len(u.email) <= 80 and len(u.name) <= 80 and "\u202e" not in u.email
    with pytest.raises(UserError, match="not a user id"):
        User("../x")
    with pytest.raises(UserError, match="did not say who you are"):
        from_claims({"email": "alice@school.test"})
    with pytest.raises(ValueError, match="not a user id"):
        uploads_dir("../bob")


def test_admins_are_the_verified_emails_in_CNNVIZ_ADMINS(people, monkeypatch):
    assert people["teacher"].is_admin and not people["alice"].is_admin and LOCAL.is_admin
    sneaky = from_claims({"iss": ISS, "sub": "s", "email": "teacher@school.test", "email_verified": False})
    assert not sneaky.is_admin  # an unverified e-mail does not make an admin
    monkeypatch.setenv("CNNVIZ_ADMINS", "")
    assert not from_claims({"iss": ISS, "sub": "sub-teacher", "email": "teacher@school.test"}).is_admin


def test_the_registry_names_people_and_the_cli_owner_resolves_an_email(runs_root, people):  # noqa: F811
    for u in people.values():
        remember(u, runs_root)
    names = known(runs_root)
    assert names[people["alice"].id].display == "Alice" and names[people["teacher"].id].is_admin
    assert resolve("ALICE@school.test", runs_root) == people["alice"].id
    assert resolve(people["bob"].id, runs_root) == people["bob"].id
    with pytest.raises(UserError, match="has signed in here yet"):
        resolve("nobody@school.test", runs_root)
    assert cli.main(["train", "--queue", "--owner", "nobody@school.test", "--model", "lenet5", "--dataset",
                     "shapes", "--epochs", "1"]) == 2
    assert list(runs_root.glob("*/config.json")) == []


# ---------------------------------------------------------------- who may manage a run

def test_only_the_owner_and_the_teachers_manage_a_run_in_sign_in_mode(runs_root, people):  # noqa: F811
    alice, bob, teacher = people["alice"], people["bob"], people["teacher"]
    done = _ended_run(runs_root, "20260101-000000-alices", alice.id)
    waiting = queue.submit(TrainConfig(**TINY), runs_root, by=alice, dispatch_now=False)
    assert owner_of(waiting) == alice.id == owner_of(done)
    refusals = [
        lambda: request_stop(done, by=bob),
        lambda: queue.cancel(waiting, by=bob),
        lambda: queue.submit(TrainConfig(**{**TINY, "epochs": 3}), runs_root, resume_run_dir=done, by=bob),
        lambda: delete_run(done, by=bob),
        lambda: manage.checkpoint_bytes(done, by=bob),
        lambda: manage.training_script(done, by=bob),
        lambda: manage.bundle_source(done, by=bob),
    ]
    for act in refusals:
        with pytest.raises(NotAllowed) as info:
            act()
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith("Bob may not ") and "belongs to someone else" in msg
    # nothing happened: no stop asked, still queued once, still on disk, no resume queued
    assert not (done / STOP_FILE).exists() and done.is_dir() and waiting.is_dir()
    assert [e.run_dir.name for e in queue.entries(runs_root)] == [waiting.name]
    assert not may_manage(bob, done) and may_manage(alice, done) and may_manage(teacher, done)
    # the owner and a teacher may
    assert manage.checkpoint_bytes(done, by=alice) == b"weights of " + done.name.encode()
    assert manage.checkpoint_bytes(done, by=teacher)
    request_stop(done, by=teacher)
    assert (done / STOP_FILE).exists()
    assert queue.cancel(waiting, by=teacher) and not waiting.exists()
    delete_run(done, by=alice)
    assert not done.exists()


def test_a_run_without_an_owner_is_managed_by_admins_and_the_local_user(runs_root, people):  # noqa: F811
    d = _ended_run(runs_root, "20260101-000000-nobodys", None)
    assert owner_of(d) is None
    with pytest.raises(NotAllowed):
        delete_run(d, by=people["alice"])
    assert may_manage(people["teacher"], d) and may_manage(LOCAL, d) and may_manage(None, d)


def test_local_mode_the_local_user_and_the_cli_may_do_everything(runs_root, people):  # noqa: F811
    a = _ended_run(runs_root, "20260101-000000-a", people["alice"].id)
    b = _ended_run(runs_root, "20260101-000001-b", "local")
    for d in (a, b):
        assert manage.checkpoint_bytes(d, by=LOCAL) == manage.checkpoint_bytes(d) == (d / LAST_WEIGHTS).read_bytes()
    request_stop(a)  # by=None: the trusted caller
    assert (a / STOP_FILE).exists()
    run = queue.submit(TrainConfig(**TINY), runs_root, by=LOCAL, dispatch_now=False)
    assert owner_of(run) == "local"
    assert queue.cancel(run, by=LOCAL)
    delete_run(b, by=LOCAL)
    assert [r.run_id for r in mine(LOCAL, list_runs(runs_root))] == [a.name]
    assert cli.main(["stop", str(runs_root / "gone")]) == 2  # not a run: one line, no traceback


def test_students_queue_only_for_themselves_and_only_on_named_datasets_or_their_uploads(runs_root, people,  # noqa: F811
                                                                                        tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    alice, bob, teacher = people["alice"], people["bob"], people["teacher"]
    with pytest.raises(NotAllowed, match="may not queue runs for someone else"):
        queue.submit(TrainConfig(**TINY), runs_root, owner=alice.id, by=bob, dispatch_now=False)
    with pytest.raises(NotAllowed, match="may not train on folder:/etc"):
        queue.submit(TrainConfig(**{**TINY, "dataset": "folder:/etc"}), runs_root, by=bob, dispatch_now=False)
    zip_bytes = b"PK\x05\x06" + b"\x00" * 18  # an empty zip
    mine_zip = save_upload(alice.id, "My Pets (v2).zip", zip_bytes)
    assert mine_zip.parent == uploads_dir(alice.id) and mine_zip.name == "my-pets-v2.zip"
    assert dataset_allowed(alice, f"zip:{mine_zip}") and not dataset_allowed(bob, f"zip:{mine_zip}")
    assert not dataset_allowed(bob, f"zip:{mine_zip.parent}/../{alice.id}/{mine_zip.name}")
    assert dataset_allowed(teacher, "folder:/srv/class-data") and dataset_allowed(bob, "cifar10")
    made = queue.submit(TrainConfig(**TINY), runs_root, owner=alice.id, by=teacher, dispatch_now=False)  # a teacher may
    assert [p.parent for p in runs_root.glob("*/config.json")] == [made] and owner_of(made) == alice.id


def test_pausing_the_queue_is_for_admins(runs_root, people):  # noqa: F811
    with pytest.raises(NotAllowed, match="only a teacher"):
        queue.pause(runs_root, by=people["bob"])
    queue.pause(runs_root, by=people["teacher"])
    assert queue.paused(runs_root)["by"] == "Teacher"
    queue.submit(TrainConfig(**TINY), runs_root, by=people["alice"], dispatch_now=False)
    assert queue.dispatch(runs_root) == []  # paused: nothing starts
    with pytest.raises(NotAllowed):
        queue.unpause(runs_root, by=people["alice"])
    assert cli.main(["pause"]) == 0 and queue.paused(runs_root)["by"] == "the command line"


# ---------------------------------------------------------------- the fair queue

class _E:
    def __init__(self, owner, t, name):
        self.owner, self.queued_at, self.run_dir = owner, t, Path(name)


def test_round_robin_order_the_owner_whose_last_start_is_oldest_goes_first():
    es = [_E("a", 1, "a1"), _E("a", 2, "a2"), _E("a", 3, "a3"), _E("b", 4, "b1"), _E("c", 5, "c1"), _E("b", 6, "b2")]
    assert [e.run_dir.name for e in fair.order(es, {})] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    # a started a moment ago, c long ago, b never: b, then c, then a
    assert [e.run_dir.name for e in fair.order(es, {"a": 100.0, "c": 50.0})] == ["b1", "c1", "a1", "b2", "a2", "a3"]
    # one owner (local mode, the CLI): first come, first served
    solo = [_E(None, t, f"r{t}") for t in range(5)]
    assert [e.run_dir.name for e in fair.order(solo, {"": 7.0})] == [f"r{t}" for t in range(5)]
    assert fair.ahead(es, {}, {"b2"}) == (4, 3) and fair.ahead(es, {}, {"a1"}) == (0, 0)
    assert fair.ahead(es, {}, {"zz"}) is None


def _hold(run_dir: Path) -> None:
    (run_dir / GATE_FILE).write_text("0")  # the run holds before its first step


def _kill(run_dir: Path) -> None:
    rec = read_launcher(run_dir)
    os.killpg(int(rec["pid"]), signal.SIGKILL)
    wait_for(lambda: not summary(run_dir).status.training, f"{run_dir.name} to end")


def test_dispatch_starts_runs_in_turns_across_owners(runs_root, people):  # noqa: F811
    alice, bob = people["alice"], people["bob"]
    a1 = queue.submit(TrainConfig(**TINY), runs_root, by=alice, dispatch_now=False)
    a2 = queue.submit(TrainConfig(**TINY), runs_root, by=alice, dispatch_now=False)
    b1 = queue.submit(TrainConfig(**TINY), runs_root, by=bob, dispatch_now=False)
    for d in (a1, a2, b1):
        _hold(d)
    assert queue.positions(runs_root) == {a1.name: 1, b1.name: 2, a2.name: 3}
    assert queue.dispatch(runs_root) == [a1]  # one slot (CNNVIZ_MAX_RUNS=1)
    assert queue.positions(runs_root) == {b1.name: 1, a2.name: 2}  # bob's turn next, though queued after a2
    assert queue.ahead_of({a2.name}, runs_root) == (1, 1)
    assert queue.dispatch(runs_root) == []  # the slot is taken
    _kill(a1)
    assert queue.dispatch(runs_root) == [b1]
    _kill(b1)
    assert queue.dispatch(runs_root) == [a2]
    starts = fair.load(runs_root / ".queue")
    assert starts[alice.id] > starts[bob.id]


def test_a_user_trains_at_most_their_running_cap_but_local_mode_has_none(runs_root, people,  # noqa: F811
                                                                        monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "2")
    alice, bob = people["alice"], people["bob"]
    lim = Limits(max_running=1)
    a1, a2 = (queue.submit(TrainConfig(**TINY), runs_root, by=alice, limits=lim, dispatch_now=False)
              for _ in range(2))
    for d in (a1, a2):
        _hold(d)
    assert queue.dispatch(runs_root) == [a1]  # a free slot, but alice trains her one already
    b1 = queue.submit(TrainConfig(**TINY), runs_root, by=bob, limits=lim, dispatch_now=False)
    _hold(b1)
    assert queue.dispatch(runs_root) == [b1]
    _kill(a1)
    _kill(b1)
    set_quota(alice.id, {"max_running": 0}, runs_root)  # the teacher lifts alice's cap
    l1 = queue.submit(TrainConfig(**TINY), runs_root, by=LOCAL, limits=Limits().local(), dispatch_now=False)
    _hold(l1)
    assert sorted(queue.dispatch(runs_root)) == sorted([a2, l1])


def test_a_stop_pressed_while_a_run_loads_its_data_is_kept_and_an_old_one_is_not(runs_root, people):  # noqa: F811
    alice = people["alice"]
    d = queue.submit(TrainConfig(**TINY), runs_root, by=alice)  # starts now (one free slot)
    request_stop(d, by=alice)  # at once: the process is still importing torch and loading data
    wait_for(lambda: summary(d).status == Status.STOPPED, "the run to stop at its first step")
    again = queue.submit(TrainConfig(**{**TINY, "epochs": 2}), runs_root, resume_run_dir=d, by=alice)
    assert again == d and not (d / STOP_FILE).exists()  # the old stop was dropped when it launched
    wait_for(lambda: summary(d).status == Status.FINISHED, "the resumed run to finish")


# ---------------------------------------------------------------- limits

def test_two_sessions_of_one_user_share_one_queued_limit_which_names_its_variable(runs_root, people,  # noqa: F811
                                                                                 monkeypatch):
    alice, bob = people["alice"], people["bob"]
    monkeypatch.setenv("CNNVIZ_MAX_QUEUED_PER_USER", "2")
    lim = Limits.for_user(alice.id, runs_root)
    assert lim.max_queued == 2
    queue.submit(TrainConfig(**TINY), runs_root, by=alice, visitor=alice.id, limits=lim, dispatch_now=False)  # tab 1
    queue.submit(TrainConfig(**TINY), runs_root, by=alice, visitor=alice.id, limits=lim, dispatch_now=False)  # tab 2
    with pytest.raises(LimitError, match=r"^You have 2 run\(s\) queued .* \(CNNVIZ_MAX_QUEUED_PER_USER\)"):
        queue.submit(TrainConfig(**TINY), runs_root, by=alice, visitor=alice.id, limits=lim, dispatch_now=False)
    queue.submit(TrainConfig(**TINY), runs_root, by=bob, visitor=bob.id, limits=Limits.for_user(bob.id, runs_root),
                 dispatch_now=False)
    set_quota(alice.id, {"max_queued": 3}, runs_root)
    assert quota_of(alice.id, runs_root) == {"max_queued": 3} and Limits.for_user(bob.id, runs_root).max_queued == 2
    queue.submit(TrainConfig(**TINY), runs_root, by=alice, visitor=alice.id,
                 limits=Limits.for_user(alice.id, runs_root), dispatch_now=False)
    with pytest.raises(ValueError, match="must be a whole number"):
        set_quota(alice.id, {"max_queued": -1}, runs_root)
    with pytest.raises(ValueError, match="not a quota"):
        set_quota(alice.id, {"max_gpus": 1}, runs_root)
    set_quota(alice.id, {"max_queued": None}, runs_root)
    assert quota_of(alice.id, runs_root) == {}


def test_limit_variables_defaults_old_name_and_bad_values(monkeypatch):
    assert Limits.from_env() == Limits(max_queued=8, max_epochs=200, max_sweep_runs=16, max_train_images=100_000,
                                       max_running=1, max_storage_mb=2000)
    assert Limits.from_env().local().max_running == 0 and Limits.from_env().local().max_storage_mb == 0
    monkeypatch.setenv("CNNVIZ_MAX_QUEUED_PER_VISITOR", "3")
    assert Limits.from_env().max_queued == 3  # the earlier name still works
    monkeypatch.setenv("CNNVIZ_MAX_RUNNING_PER_USER", "two")
    with pytest.raises(LimitError, match="^CNNVIZ_MAX_RUNNING_PER_USER must be a whole number"):
        Limits.from_env()
    monkeypatch.setenv("CNNVIZ_MAX_RUNNING_PER_USER", "-1")
    with pytest.raises(LimitError, match="0 \\(no limit\\) or more"):
        Limits.from_env()


def test_storage_limit_counts_a_users_runs_and_uploads(runs_root, people, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    alice, bob = people["alice"], people["bob"]
    d = _ended_run(runs_root, "20260101-000000-big", alice.id)
    (d / "epoch-0001.safetensors").write_bytes(b"\0" * 3 * 2**20)
    save_upload(alice.id, "pets.zip", b"PK" + b"\0" * 2**20)
    assert storage_of(alice.id, runs_root) > 4 * 2**20 and storage_of(bob.id, runs_root) == 0
    lim = Limits(max_storage_mb=4)
    with pytest.raises(LimitError, match=r"^Your runs and uploads hold 4 MB; .*CNNVIZ_MAX_STORAGE_MB_PER_USER"):
        queue.submit(TrainConfig(**TINY), runs_root, by=alice, visitor=alice.id, limits=lim, dispatch_now=False)
    queue.submit(TrainConfig(**TINY), runs_root, by=bob, visitor=bob.id, limits=lim, dispatch_now=False)
    queue.submit(TrainConfig(**TINY), runs_root, by=LOCAL, limits=lim.local(), dispatch_now=False)  # local: none


def test_uploads_are_kept_per_user_within_a_quota(people, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CNNVIZ_UPLOAD_QUOTA_MB", "1")
    alice, bob = people["alice"], people["bob"]
    save_upload(alice.id, "a.zip", b"PK" + b"\0" * 600_000)
    save_upload(alice.id, "a.zip", b"PK" + b"\0" * 700_000)  # replacing a file counts once
    with pytest.raises(UploadError, match=r"^Keeping 0.5 MB more .* \(CNNVIZ_UPLOAD_QUOTA_MB\)"):
        save_upload(alice.id, "b.zip", b"PK" + b"\0" * 500_000)
    with pytest.raises(UploadError, match="not a zip file"):
        save_upload(alice.id, "c.zip", b"GIF89a")
    save_upload(bob.id, "b.zip", b"PK" + b"\0" * 500_000)  # bob's quota is his own
    assert [n for n, _ in list_uploads(alice.id)] == ["a.zip"] and [n for n, _ in list_uploads(bob.id)] == ["b.zip"]


def test_designs_are_saved_in_a_folder_per_user(people, tmp_path, monkeypatch):
    from cnnviz.models.design import storage

    monkeypatch.setenv("CNNVIZ_DESIGNS", str(tmp_path / "designs"))
    alice = people["alice"]
    folder = storage.user_folder(alice.id)
    assert folder == tmp_path / "designs" / alice.id and storage.user_folder("local") == tmp_path / "designs"
    with pytest.raises(ValueError, match="not a user id"):
        storage.user_folder("../../etc")
    spec = {"name": "My net", "input": [3, 8, 8], "layers": [{"type": "flatten"}, {"type": "linear", "in_features": 192, "out_features": 10}]}
    try:
        path = storage.save(spec, 10, folder=folder)
    except ValueError as exc:  # the design schema is the designer's: say what it wants
        pytest.fail(f"a minimal design no longer saves: {exc}")
    assert path.parent == folder
    names = storage.design_names(folder)
    assert names == [f"design:{alice.id}/my-net.json"] and storage.design_names() == []
    assert storage.resolve_path(names[0]) == path.resolve()


# ---------------------------------------------------------------- the class board and usage

def test_the_board_ranks_finished_runs_per_dataset_and_usage_is_per_owner(runs_root, people):  # noqa: F811
    alice, bob = people["alice"], people["bob"]
    _ended_run(runs_root, "20260101-000000-a1", alice.id, acc=0.61, epochs=3)
    _ended_run(runs_root, "20260101-000001-b1", bob.id, acc=0.72, epochs=2, device="cuda", elapsed=7200.0)
    _ended_run(runs_root, "20260101-000002-b2", bob.id, acc=0.61, epochs=2)
    live = fake_run(runs_root, "20260101-000003-open", [{"kind": "start"}])  # no final line, no owner
    rows = usage.board(list_runs(runs_root), "shapes")
    assert [(r.rank, r.run_id[-2:], round(r.test_acc, 2)) for r in rows] == [(1, "b1", 0.72), (2, "b2", 0.61),
                                                                              (3, "a1", 0.61)]
    assert usage.board_datasets(list_runs(runs_root)) == ["shapes"] and usage.board(list_runs(runs_root), "mnist") == []
    per = {u.owner: u for u in usage.usage(list_runs(runs_root))}
    assert per[bob.id].runs == 2 and per[bob.id].finished == 2 and per[alice.id].runs == 1
    assert per[bob.id].gpu_hours == pytest.approx(2.0) and per[alice.id].gpu_hours == 0
    assert per[alice.id].cpu_hours == pytest.approx(36 / 3600) and per[bob.id].storage_bytes > 0
    assert summary(live).status != Status.FINISHED and None in per
    assert json.loads((runs_root / "20260101-000000-a1" / OWNER_FILE).read_text())["owner"] == alice.id
