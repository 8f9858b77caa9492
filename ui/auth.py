"""Sign-in with Streamlit's own st.login (OpenID Connect), configured in `.streamlit/secrets.toml` `[auth]`.

    user = auth.current_user()     # LOCAL without [auth]; the signed-in User; None when signed out or expired
    user = auth.require_user()     # the same, or a sign-in box and st.stop() (every page but Home)
    auth.sidebar_account()         # who is signed in, and Sign out

Without an `[auth]` section cnnviz is the single-user local app: user "local", an admin, no sign-in.
With one, it must be complete: a broken section (a key missing or wrong) is one line on every page and
in the server log at start-up (`startup_check`), never a silent fallback to no sign-in.

A sign-in lasts `CNNVIZ_SIGNIN_HOURS` (default 12) from the moment it was made (the identity's
`auth_time`, else `iat`); after that the page asks to sign in again. Runs go on meanwhile and stay
the user's: they belong to the user id, not to a browser session.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import streamlit as st

from cnnviz.models.design.storage import user_folder
from cnnviz.runs import runs_root
from cnnviz.users import LOCAL, User, UserError, from_claims, remember

PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
DEFAULT_HOURS = 12.0


class AuthConfigError(ValueError):
    """The [auth] section exists but cannot be used; the message names the key."""


# ---------------------------------------------------------------- configuration

def _secrets_dict() -> dict[str, Any] | None:
    """The secrets (all files), None when there is no secrets file; AuthConfigError when one is not TOML."""
    try:
        return st.secrets.to_dict()
    except FileNotFoundError as exc:  # streamlit's StreamlitSecretNotFoundError: none, or one it could not read
        from streamlit import config

        if any(Path(p).is_file() for p in config.get_option("secrets.files")):
            raise AuthConfigError(f"The secrets file is not valid TOML: {str(exc).splitlines()[0]}") from None
        return None


def _url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) > 10


def check_section(section: Mapping[str, Any]) -> list[str]:
    """The provider names of a complete [auth] section ("default" for the flat form); AuthConfigError
    (one line naming the key) for a broken one."""
    where = "[auth] in .streamlit/secrets.toml"
    if not isinstance(section, Mapping):
        raise AuthConfigError(f"{where}: 'auth' must be a table ([auth]), not a {type(section).__name__}.")
    redirect = section.get("redirect_uri")
    if redirect is None:
        raise AuthConfigError(f"{where}: redirect_uri is missing (the app's address + /oauth2callback, e.g. "
                              "https://cnnviz.school.example/oauth2callback).")
    if not _url(redirect) or not str(redirect).rstrip("/").endswith("/oauth2callback"):
        raise AuthConfigError(f"{where}: redirect_uri must be an http(s) address ending in /oauth2callback, not "
                              f"{str(redirect)[:80]!r}.")
    secret = section.get("cookie_secret")
    if not isinstance(secret, str) or len(secret.strip()) < 16:
        raise AuthConfigError(f"{where}: cookie_secret is " + ("missing" if secret is None else "too short") +
                              " (a random string of 16 characters or more, e.g. `python -c \"import secrets; "
                              "print(secrets.token_hex(32))\"`).")
    if any(k in section for k in PROVIDER_KEYS):
        providers = {"default": section}
    else:
        providers = {k: v for k, v in section.items() if isinstance(v, Mapping)}
        if not providers:
            raise AuthConfigError(f"{where}: no provider: give client_id, client_secret and server_metadata_url "
                                  "(or an [auth.NAME] table with them).")
    for name, p in providers.items():
        label = "[auth]" if name == "default" else f"[auth.{name}]"
        if "_" in name:
            raise AuthConfigError(f"{label}: a provider name may not contain '_' (Streamlit's rule); rename it.")
        for k in PROVIDER_KEYS:
            if not p.get(k) or not isinstance(p.get(k), str):
                raise AuthConfigError(f"{label} in .streamlit/secrets.toml: {k} is missing.")
        if not _url(p["server_metadata_url"]):
            raise AuthConfigError(f"{label}: server_metadata_url must be an http(s) address (the provider's "
                                  ".well-known/openid-configuration), not {p['server_metadata_url'][:80]!r}.")
    return list(providers)


def providers() -> list[str] | None:
    """The configured providers; None without an [auth] section; AuthConfigError for a broken one."""
    secrets = _secrets_dict()
    if not secrets or "auth" not in secrets:
        return None
    return check_section(secrets["auth"])


def config_problem() -> str | None:
    """The one line saying what is wrong with [auth], or None when it is absent or complete."""
    try:
        providers()
    except AuthConfigError as exc:
        return str(exc)
    return None


def startup_check() -> None:
    """At server start (app.py's lifespan): one line on stderr when [auth] is broken, or says sign-in is on."""
    try:
        names = providers()
    except AuthConfigError as exc:
        print(f"cnnviz: sign-in is configured but broken: {exc}", file=sys.stderr, flush=True)
        return
    if names:
        print(f"cnnviz: sign-in on ({', '.join(names)}); admins: {os.environ.get('CNNVIZ_ADMINS') or 'none'}",
              file=sys.stderr, flush=True)


def sign_in_configured() -> bool:
    """True when [auth] exists (broken or not: a broken one must not open the app to everyone)."""
    try:
        return providers() is not None
    except AuthConfigError:
        return True


# ---------------------------------------------------------------- who is here

def signin_hours() -> float:
    raw = os.environ.get("CNNVIZ_SIGNIN_HOURS", "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_HOURS
    except ValueError:
        return DEFAULT_HOURS
    return hours if hours > 0 else DEFAULT_HOURS


def _claims() -> dict[str, Any]:
    try:
        return dict(st.user.to_dict())
    except (AttributeError, TypeError):
        return {}


def expired(claims: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether a sign-in made at the identity's auth_time (else iat) is older than CNNVIZ_SIGNIN_HOURS."""
    made = claims.get("auth_time") or claims.get("iat")
    if not isinstance(made, (int, float)) or isinstance(made, bool):
        return False
    return (now if now is not None else time.time()) > float(made) + signin_hours() * 3600


def current_user() -> User | None:
    """LOCAL without sign-in; the signed-in user (recorded under <runs>/.users/); None when signed out,
    when the sign-in expired, or when [auth] is broken."""
    if not sign_in_configured():
        return LOCAL
    if config_problem():
        return None
    claims = _claims()
    if not claims.get("is_logged_in") or expired(claims):
        return None
    try:
        user = from_claims(claims)
    except UserError:
        return None
    try:
        remember(user, runs_root())
    except OSError:
        pass  # the registry only names people for the teacher: a full disk must not lock anyone out
    return user


def signed_out() -> bool:
    return current_user() is None


def sign_in_box(where: str = "main") -> None:
    """Why to sign in (signed out, or expired) and a Sign in button per provider."""
    problem = config_problem()
    if problem:
        st.error(f"Sign-in is configured but broken: {problem}", icon=":material/error:")
        return
    names = providers() or []
    claims = _claims()
    box = st.sidebar if where == "sidebar" else st
    if claims.get("is_logged_in") and expired(claims):
        box.warning("Your sign-in has expired: sign in again. Your runs went on and are still yours.",
                    icon=":material/lock_clock:")
    elif where == "main":
        box.info("Sign in to use this page. Everything you train here is yours: your runs, designs and uploads.",
                 icon=":material/lock:")
    for name in names:
        label = "Sign in" if name == "default" else f"Sign in with {name}"
        if box.button(label, key=f"auth_login_{where}_{name}", type="primary", icon=":material/login:"):
            st.login(None if name == "default" else name)


def require_user() -> User:
    """The acting user, or (signed out, expired, broken [auth]) a sign-in box and st.stop()."""
    user = current_user()
    if user is None:
        sign_in_box()
        st.stop()
    return user


def sidebar_account() -> None:
    """In the sidebar: who is signed in and Sign out (nothing without sign-in)."""
    if not sign_in_configured():
        return
    user = current_user()
    if user is None:
        sign_in_box("sidebar")
        return
    role = " · teacher" if user.is_admin else ""
    shown = user.name or user.email
    st.sidebar.markdown(f":material/account_circle: Signed in as **{shown}**{role}")
    if user.email and user.email != shown:
        st.sidebar.caption(user.email)
    if st.sidebar.button("Sign out", key="auth_logout", icon=":material/logout:"):
        st.logout()


def visitor(user: User) -> str:
    """Whose limits a request counts against: the signed-in user's id; without sign-in this browser session."""
    if sign_in_configured():
        return user.id
    import secrets

    return st.session_state.setdefault("cnnviz_visitor", "session-" + secrets.token_hex(8))


def designs_folder(user: User | None = None) -> Path:
    """Where this user's designs are saved (the designs folder itself without sign-in)."""
    user = user or current_user() or LOCAL
    return user_folder(None if user.id == "local" else user.id)
