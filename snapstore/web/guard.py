"""Who may talk to the dashboard: an ASGI middleware in front of every route.

A loopback port is reachable by every local user and, through the browser, by any web page
(cross-site requests, DNS rebinding), so every request must show:

- a **Host** header naming this server (``127.0.0.1``, ``localhost``, ``[::1]`` or the address
  it listens on): a rebinding page's requests carry its own host name and are refused (421);
- the **token** printed at start: in the URL once (``?token=...``; the answer is a redirect to the
  same URL without it, setting an HttpOnly, SameSite=Strict cookie), then the cookie, or an
  ``Authorization: Bearer`` header (for a Prometheus scraper); otherwise 401;
- on state-changing methods (POST), a **CSRF token** form field derived from the token (an
  HMAC), and an ``Origin``, when the browser sends one, of this server; otherwise 403.

Every answer carries a strict Content-Security-Policy (nothing but this origin; no inline
script), ``X-Frame-Options: DENY``, ``nosniff`` and ``Referrer-Policy: same-origin`` (no Referer
leaves for another site; the token is out of the URL after the first redirect anyway). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "snap_ui"
CSRF_FIELD = "csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make POSTs send "Origin: null"
    (b"cache-control", b"no-store"),
]


def csrf_token(token: str) -> str:
    """The CSRF token of a session: bound to the secret token, useless without it."""
    return hmac.new(token.encode(), b"snap-ui-csrf", hashlib.sha256).hexdigest()


def host_name(host: str) -> str:
    """``127.0.0.1:8377`` -> ``127.0.0.1``; ``[::1]:8377`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """The checks of the module docstring around ``app``."""

    def __init__(self, app: ASGIApp, *, token: str, hosts: set[str], cookie: str = COOKIE) -> None:
        self.app = app
        self.cookie = cookie  # cookies ignore ports: one name per server, so two dashboards coexist
        self.token = token
        self.csrf = csrf_token(token)
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            await _plain(send_secured, 421, "refused: this server answers only to its own address (Host header)")
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in query if k == "token"), None)
        if given is not None:
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                await _plain(send_secured, 401, "refused: wrong token (use the URL snap ui printed)")
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("path", "/") + (f"?{rest}" if rest else "")
            await send_secured({"type": "http.response.start", "status": 303, "headers": [
                (b"location", location.encode("latin-1")),
                (b"set-cookie", f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()),
                (b"content-type", b"text/plain; charset=utf-8")]})
            await send_secured({"type": "http.response.body", "body": b"signed in\n"})
            return
        if not self._authorised(headers):
            await _plain(send_secured, 401, "refused: no token (open the URL snap ui printed)")
            return
        if scope.get("method", "GET") not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and host_name(origin.split("://", 1)[-1]) not in self.hosts:
                await _plain(send_secured, 403, "refused: cross-origin request")
                return
            body = await _read_body(receive)
            fields = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
            sent = fields.get(CSRF_FIELD) or headers.get("x-csrf-token", "")
            if not hmac.compare_digest(sent.encode(), self.csrf.encode()):
                await _plain(send_secured, 403, "refused: missing or wrong CSRF token")
                return
            receive = _replay(body)
        scope.setdefault("state", {})["csrf"] = self.csrf
        await self.app(scope, receive, send_secured)

    def _authorised(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            return False
        morsel = cookie.get(self.cookie)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.token.encode())


async def _plain(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode() + b"\n"})


MAX_FORM = 1024 * 1024


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM:
            break  # forms here are tiny; a huge body is not one of ours (and fails the CSRF check)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
