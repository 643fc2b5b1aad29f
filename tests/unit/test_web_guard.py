"""The dashboard's guard as a plain ASGI middleware, driven without a server or a browser."""

from __future__ import annotations

import asyncio
from typing import Any

from snapstore.web.guard import Guard, csrf_token, host_name

TOKEN = "s3cret-token"


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    body = message.get("body", b"")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"app saw " + body})


def _call(method: str = "GET", path: str = "/", query: str = "", headers: dict[str, str] | None = None,
          body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    guard = Guard(_echo, token=TOKEN, hosts={"127.0.0.1", "localhost"}, cookie="snap_ui_9")
    sent: list[dict[str, Any]] = []
    given = {"Host": "127.0.0.1:9", **(headers or {})}
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(),
             "headers": [(k.lower().encode(), v.encode()) for k, v in given.items()]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    got = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], got, b"".join(m.get("body", b"") for m in sent[1:])


def test_host_names() -> None:
    assert host_name("127.0.0.1:8377") == "127.0.0.1"
    assert host_name("LocalHost:1") == "localhost"
    assert host_name("[::1]:8377") == "[::1]"
    assert host_name("evil.example") == "evil.example"


def test_the_token_once_in_the_url_then_a_cookie() -> None:
    assert _call()[0] == 401
    assert _call(query="token=wrong")[0] == 401
    status, headers, _ = _call(path="/snapshots", query=f"token={TOKEN}&tier=daily")
    assert status == 303 and headers["location"] == "/snapshots?tier=daily"
    assert headers["set-cookie"].startswith(f"snap_ui_9={TOKEN};") and "HttpOnly" in headers["set-cookie"]
    assert "SameSite=Strict" in headers["set-cookie"]
    status, headers, body = _call(headers={"Cookie": f"snap_ui_9={TOKEN}"})
    assert (status, body) == (200, b"app saw ")
    assert "default-src 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert _call(headers={"Cookie": f"snap_ui_8={TOKEN}"})[0] == 401  # another dashboard's cookie
    assert _call(headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_foreign_hosts_are_refused_even_with_the_token() -> None:
    assert _call(query=f"token={TOKEN}", headers={"Host": "rebind.example:9"})[0] == 421
    assert _call(headers={"Host": "rebind.example", "Cookie": f"snap_ui_9={TOKEN}"})[0] == 421
    assert _call(headers={"Host": "localhost:9", "Cookie": f"snap_ui_9={TOKEN}"})[0] == 200


def test_posts_need_the_csrf_token_and_our_origin() -> None:
    auth = {"Cookie": f"snap_ui_9={TOKEN}"}
    assert _call("POST", headers=auth, body=b"target=/tmp/x")[0] == 403
    assert _call("POST", headers=auth, body=b"csrf=nope&target=/tmp/x")[0] == 403
    good = f"csrf={csrf_token(TOKEN)}&target=/tmp/x".encode()
    assert _call("POST", headers={**auth, "Origin": "http://attacker.example"}, body=good)[0] == 403
    assert _call("POST", headers={**auth, "Origin": "null"}, body=good)[0] == 403
    status, _, body = _call("POST", headers={**auth, "Origin": "http://127.0.0.1:9"}, body=good)
    assert status == 200 and body == b"app saw " + good  # the form reaches the app whole
    assert _call("POST", body=good)[0] == 401  # no token: the CSRF token alone is not enough
