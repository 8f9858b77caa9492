"""Who is acting: a `User` (a safe id, an e-mail and a name kept apart, admin or not), the local user
of a server without sign-in, and the small registry of users a server has seen.

    user = from_claims(st.user)        # an OpenID Connect identity: issuer + sub -> a safe id
    user.id                            # "u-<32 hex>": a folder name whatever the provider sent
    LOCAL                              # no sign-in configured: the one local user, an admin
    remember(user, root)               # <runs>/.users/<id>.json: how the teacher view names people
    resolve("alice@school.edu", root)  # the CLI's --owner: an e-mail or a user id -> a user id

A user is identified by issuer + `sub` (the provider's stable subject), never by the e-mail or name,
which can change and can hold anything (`../`, unicode, 10 kB): those are shown, never used as paths.
`CNNVIZ_ADMINS` lists the teachers' e-mails (comma-separated); an admin may manage every run.
Nothing here imports streamlit or torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .atomic import atomic_write_bytes

USERS_DIR = ".users"
ID_RE = re.compile(r"^(local|u-[0-9a-f]{32})$")
MAX_SHOWN = 80  # characters of an e-mail or name kept for display


class UserError(ValueError):
    """An identity that cannot be used (no issuer or subject, an unknown --owner)."""


@dataclass(frozen=True)
class User:
    """The acting user. `id` is safe as a folder name; `email` and `name` are for display only."""

    id: str
    email: str = ""
    name: str = ""
    is_admin: bool = False

    @property
    def display(self) -> str:
        return self.name or self.email or self.id

    def __post_init__(self) -> None:
        if not ID_RE.match(self.id):
            raise UserError(f"{self.id[:40]!r} is not a user id (local, or u- and 32 hex digits).")


LOCAL = User("local", "", "local", True)


def user_id(issuer: str, sub: str) -> str:
    """The safe id of the identity `sub` at `issuer`: 'u-' + 32 hex digits of a SHA-256."""
    return "u-" + hashlib.sha256(f"{issuer}\n{sub}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def is_user_id(text: Any) -> bool:
    return isinstance(text, str) and bool(ID_RE.match(text))


def admin_emails() -> set[str]:
    """The e-mails in $CNNVIZ_ADMINS (comma-separated), lower-cased."""
    return {e.strip().lower() for e in os.environ.get("CNNVIZ_ADMINS", "").split(",") if e.strip()}


def _shown(value: Any) -> str:
    text = "".join(ch for ch in str(value or "") if ch.isprintable())
    return text[:MAX_SHOWN]


def from_claims(claims: Mapping[str, Any]) -> User:
    """The user of an OpenID Connect identity (st.user: the ID token's claims). An e-mail in
    CNNVIZ_ADMINS makes an admin, unless the provider says it is not verified."""
    iss, sub = claims.get("iss"), claims.get("sub")
    if not iss or not sub:
        raise UserError("The sign-in did not say who you are (no 'iss' and 'sub' in the identity): sign in again.")
    email = _shown(claims.get("email"))
    verified = claims.get("email_verified", True) not in (False, "false", "False")
    admin = bool(email) and verified and email.lower() in admin_emails()
    return User(user_id(str(iss), str(sub)), email, _shown(claims.get("name") or claims.get("preferred_username")),
                admin)


def users_dir(root: Path) -> Path:
    return Path(root) / USERS_DIR


def remember(user: User, root: Path) -> None:
    """Record `user` under <root>/.users/ (id, e-mail, name, last seen), atomically; rewritten only when
    the e-mail or name changed or the record is over an hour old."""
    p = users_dir(root) / f"{user.id}.json"
    try:
        old = json.loads(p.read_text())
    except (OSError, ValueError):
        old = None
    now = time.time()
    if isinstance(old, dict) and old.get("email") == user.email and old.get("name") == user.name \
            and now - float(old.get("seen") or 0) < 3600:
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, json.dumps({"id": user.id, "email": user.email, "name": user.name, "seen": now}).encode())


def known(root: Path) -> dict[str, User]:
    """Users recorded under <root>/.users/, by id (admin from CNNVIZ_ADMINS now)."""
    out: dict[str, User] = {}
    d = users_dir(root)
    if not d.is_dir():
        return out
    admins = admin_emails()
    for p in d.glob("u-*.json"):
        try:
            rec = json.loads(p.read_text())
            uid = str(rec["id"])
            if uid != p.stem:
                continue
            email = _shown(rec.get("email"))
            out[uid] = User(uid, email, _shown(rec.get("name")), bool(email) and email.lower() in admins)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def resolve(text: str, root: Path) -> str:
    """A user id from the CLI's --owner: a user id as is, else the e-mail of a user this server has seen."""
    text = (text or "").strip()
    if is_user_id(text):
        return text
    matches = [u.id for u in known(root).values() if u.email and u.email.lower() == text.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"No user {text[:80]!r} has signed in here yet: give their e-mail after they signed in "
                        "once, or their user id (u-...).")
    raise UserError(f"{len(matches)} users have the e-mail {text[:80]!r}: give the user id (u-...).")


def display_name(uid: str | None, people: Mapping[str, User]) -> str:
    """How a run's owner is shown (to admins): the name or e-mail recorded for it, else the id."""
    if not uid:
        return "(no owner)"
    u = people.get(uid)
    return u.display if u else uid
