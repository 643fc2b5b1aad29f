"""Serving the dashboard: bind the socket, print the URL with its token, run uvicorn.

The socket is bound before uvicorn starts so that ``--listen 127.0.0.1:0`` gets a free port
that is known when the URL is printed, and so that the Host names the guard accepts include
the real port's address.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
from dataclasses import replace
from pathlib import Path

from snapstore.errors import UsageError
from snapstore.web.access import UiSettings

DEFAULT_LISTEN = "127.0.0.1:8377"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8377`` for IPv6) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8377")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise UsageError(f"--listen {text!r}: give an IP address (or localhost) to bind") from None
        host = "127.0.0.1"
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def allowed_hosts(host: str) -> set[str]:
    """The Host header names this server answers to."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    address = ipaddress.ip_address(host)
    if not address.is_unspecified:
        names.add(f"[{host}]" if address.version == 6 else host)
    return names


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"--listen {host}:{port}: cannot bind ({exc.strerror})") from None
    sock.listen(128)
    return sock


def serve_dashboard(*, repository: str, history: str, schedules: dict[str, str | None], endpoint: str | None,
                    allow_restore: bool, listen: str = DEFAULT_LISTEN) -> None:
    """The ``snapstore.frontends`` entry point ``ui``: plain values in (from the CLI)."""
    serve(UiSettings(repository=repository, history=Path(history), schedules=dict(schedules), endpoint=endpoint,
                     allow_restore=allow_restore), listen)


def serve(settings: UiSettings, listen: str = DEFAULT_LISTEN) -> None:
    """Run the dashboard until interrupted; prints its URL (with the token) on stdout first."""
    import uvicorn

    from snapstore.web.app import create_app

    host, port = parse_listen(listen)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    settings = replace(settings, token=settings.token or secrets.token_urlsafe(32))
    shown = f"[{host}]" if ":" in host else host
    app = create_app(settings, hosts=allowed_hosts(host), cookie=f"snap_ui_{port}", warm=True)
    sys.stdout.write(f"snap ui: http://{shown}:{port}/?token={settings.token}\n")
    if not is_loopback(host):
        sys.stderr.write(f"snap ui: warning: listening on {host}, not loopback: anyone who can reach it and has "
                         "the token can read every snapshot\n")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, lifespan="off",
                            proxy_headers=False, ws="none")
    uvicorn.Server(config).run(sockets=[sock])
