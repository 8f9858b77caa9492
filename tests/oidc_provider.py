"""A small, real OpenID Connect provider for tests, built on Authlib's provider classes (Authlib is what
st.login itself uses as the client), served on 127.0.0.1 by a thread.

    with running_provider() as idp:       # idp.issuer, idp.metadata_url, idp.client_id, idp.client_secret
        ...                               # accounts: alice, bob (students), teacher; password "<name>-pw"

It serves discovery (`/.well-known/openid-configuration`), its signing keys (`/jwks`), an HTML login
form at `/authorize` (the authorization code flow, PKCE S256 required), `/token` (client_secret_basic or
_post) that returns an RS256-signed ID token, and `/userinfo`. Nothing is mocked: the app's st.login
talks to it over HTTP exactly as it would to Google or Keycloak.
"""

from __future__ import annotations

import contextlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Iterator
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

ACCOUNTS = {
    "alice": {"sub": "sub-alice-0001", "email": "alice@school.test", "name": "Alice Student"},
    "bob": {"sub": "sub-bob-0002", "email": "bob@school.test", "name": "Bob Student"},
    "teacher": {"sub": "sub-teacher-0003", "email": "teacher@school.test", "name": "Ms Teacher"},
}


def password_of(name: str) -> str:
    return f"{name}-pw"


@dataclass
class Account:
    username: str
    sub: str
    email: str
    name: str

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)  # empty: any http://localhost:*/oauth2callback

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "email", "profile"))

    def check_redirect_uri(self, redirect_uri):
        if self.redirect_uris:
            return redirect_uri in self.redirect_uris
        return redirect_uri.startswith("http://localhost:") and redirect_uri.endswith("/oauth2callback")

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post") if endpoint == "token" else True

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: Account
    nonce: str | None
    challenge: str | None
    challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class _Request(OAuth2Request):
    """An OAuth2Request over a parsed WSGI request (query and form)."""

    def __init__(self, method: str, uri: str, headers: dict, args: dict, form: dict):
        super().__init__(method, uri, headers=headers)
        self._args, self._form = args, form
        self.payload = BasicOAuth2Payload({**args, **form})

    @property
    def args(self):
        return self._args

    @property
    def form(self):
        return self._form


class Provider(AuthorizationServer):
    def __init__(self, issuer: str, client: Client):
        super().__init__(scopes_supported=["openid", "email", "profile"])
        self.issuer = issuer
        self.client = client
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig", "alg": "RS256"})
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Account] = {}
        self.accounts = {n: Account(n, **a) for n, a in ACCOUNTS.items()}
        self.logins: list[str] = []  # usernames that signed in, in order (tests read it)
        self.lock = threading.Lock()
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, request):
                p = request.payload.data
                with provider.lock:
                    provider.codes[code] = Code(code, request.client.get_client_id(), p.get("redirect_uri"),
                                                request.scope, request.user, p.get("nonce"),
                                                p.get("code_challenge"), p.get("code_challenge_method"),
                                                int(time.time()))

            def query_authorization_code(self, code, client):
                with provider.lock:
                    c = provider.codes.get(code)
                return c if c is not None and c.client_id == client.get_client_id() else None

            def delete_authorization_code(self, authorization_code):
                with provider.lock:
                    provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class OIDC(OpenIDCode):
            def exists_nonce(self, nonce, request):
                with provider.lock:
                    return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client):
                return provider.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": "test-key-1"}

            def get_client_claims(self, client):
                return {"iss": provider.issuer, "aud": [client.get_client_id()]}

            def generate_user_info(self, user, scope):
                info = UserInfo(sub=user.sub, name=user.name, preferred_username=user.username)
                if "email" in scope:
                    info["email"], info["email_verified"] = user.email, True
                return info

        class PKCE(CodeChallenge):
            def get_authorization_code_challenge(self, authorization_code):
                return authorization_code.challenge

            def get_authorization_code_challenge_method(self, authorization_code):
                return authorization_code.challenge_method

        self.register_grant(CodeGrant, [OIDC(require_nonce=True), PKCE(required=True)])
        self.register_token_generator("default", BearerTokenGenerator(lambda *a, **k: secrets.token_urlsafe(32)))

    # ---- what Authlib asks of a framework
    def query_client(self, client_id):
        return self.client if client_id == self.client.client_id else None

    def save_token(self, token, request):
        with self.lock:
            self.tokens[token["access_token"]] = request.user

    def send_signal(self, name, *args, **kwargs):
        return None

    def create_oauth2_request(self, request):
        return request if isinstance(request, OAuth2Request) else _Request(*request)

    def create_json_request(self, request):
        raise NotImplementedError

    def handle_response(self, status, body, headers):
        if isinstance(body, dict):
            body = json.dumps(body)
        return status, body or "", list(headers or [])

    # ---- documents
    def metadata(self) -> dict:
        i = self.issuer
        return {"issuer": i, "authorization_endpoint": f"{i}/authorize", "token_endpoint": f"{i}/token",
                "jwks_uri": f"{i}/jwks", "userinfo_endpoint": f"{i}/userinfo",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"], "grant_types_supported": ["authorization_code"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email",
                                     "email_verified", "name", "preferred_username"]}

    def jwks(self) -> dict:
        return {"keys": [self.key.as_dict(private=False)]}


LOGIN_PAGE = """<!doctype html><html><head><title>School sign-in</title></head><body>
<h1>School sign-in</h1><p>{message}</p>
<form method="post" action="/authorize?{query}">
<label>Username <input name="username" id="username" autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit" id="signin">Sign in</button></form></body></html>"""


def wsgi_app(provider: Provider):
    def app(environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        args = dict(parse_qsl(query, keep_blank_values=True))
        form: dict = {}
        if method == "POST":
            n = int(environ.get("CONTENT_LENGTH") or 0)
            form = dict(parse_qsl(environ["wsgi.input"].read(n).decode(), keep_blank_values=True))
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        uri = f"{provider.issuer}{path}" + (f"?{query}" if query else "")

        def send(status, body, hdrs=(), ctype="application/json"):
            hdrs = list(hdrs)
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("Content-Type", ctype))
            hdrs.append(("Cache-Control", "no-store"))
            start_response(f"{status} {'OK' if status < 300 else 'Found' if status == 302 else 'Error'}", hdrs)
            return [body.encode() if isinstance(body, str) else body]

        if path == "/.well-known/openid-configuration":
            return send(200, json.dumps(provider.metadata()))
        if path == "/jwks":
            return send(200, json.dumps(provider.jwks()))
        if path == "/authorize":
            req = _Request(method, uri, headers, args, {})
            try:
                grant = provider.get_consent_grant(req)
            except OAuth2Error as err:
                return send(400, f"bad authorization request: {html.escape(err.description or err.error)}",
                            ctype="text/plain")
            if method == "GET":
                page = LOGIN_PAGE.format(message="Sign in to continue to cnnviz.", query=html.escape(query))
                return send(200, page, ctype="text/html")
            acct = provider.accounts.get(form.get("username", ""))
            if acct is None or form.get("password") != password_of(acct.username):
                page = LOGIN_PAGE.format(message="Wrong username or password.", query=html.escape(query))
                return send(200, page, ctype="text/html")
            with provider.lock:
                provider.logins.append(acct.username)
            status, body, hdrs = provider.create_authorization_response(req, grant_user=acct, grant=grant)
            return send(status, body, hdrs, ctype="text/plain")
        if path == "/token" and method == "POST":
            status, body, hdrs = provider.create_token_response((method, uri, headers, args, form))
            return send(status, body, hdrs)
        if path == "/userinfo":
            token = headers.get("Authorization", "").removeprefix("Bearer ").strip()
            with provider.lock:
                acct = provider.tokens.get(token)
            if acct is None:
                return send(401, json.dumps({"error": "invalid_token"}))
            return send(200, json.dumps({"sub": acct.sub, "email": acct.email, "name": acct.name}))
        return send(404, "not found", ctype="text/plain")
    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        return None


@dataclass
class RunningProvider:
    provider: Provider
    issuer: str
    client_id: str
    client_secret: str

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def auth_toml(self, cookie_secret: str | None = None) -> str:
        """The [auth] section of a secrets.toml that points st.login at this provider."""
        return (f'[auth]\nredirect_uri = "http://localhost:{{port}}/oauth2callback"\n'
                f'cookie_secret = "{cookie_secret or secrets.token_hex(32)}"\n'
                f'client_id = "{self.client_id}"\nclient_secret = "{self.client_secret}"\n'
                f'server_metadata_url = "{self.metadata_url}"\n')


@contextlib.contextmanager
def running_provider() -> Iterator[RunningProvider]:
    """Serve a provider on a free 127.0.0.1 port in a thread; shut it down afterwards."""
    client = Client("cnnviz-test", secrets.token_urlsafe(24))
    server = make_server("127.0.0.1", 0, lambda e, s: [b""], server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    issuer = f"http://127.0.0.1:{server.server_port}"
    provider = Provider(issuer, client)
    server.set_app(wsgi_app(provider))
    thread = threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True)
    thread.start()
    try:
        yield RunningProvider(provider, issuer, client.client_id, client.client_secret)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


if __name__ == "__main__":  # a provider to try by hand: python -m tests.oidc_provider
    with running_provider() as idp:
        print(idp.auth_toml(), flush=True)
        print("accounts: " + ", ".join(f"{n} / {password_of(n)}" for n in ACCOUNTS), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
