"""Failure alerts that reach a person: the config's ``notifications.urls``, sent through Apprise.

This module owns the alert's words: :func:`alert_message` turns a failed history event into a
title and a body that carries the failure's own diagnostics (the error, and whatever the
command put in the event: verify's damaged packs, blobs, snapshots and paths; a take's
unreadable files; recover's agent, snapshots tried, failing step, output tails and where the
pre-recovery folder was kept), followed by the event itself as JSON for scripts
(``json://`` receivers parse it from the message). :func:`send_alert` delivers it.

Sending never raises and never changes an exit code: what could not be delivered comes back
as warnings. Apprise is imported only to send (it is slow to import and most runs succeed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

#: Event fields shown as "key: value" lines, in this order, before the rest.
_SHOWN = ("command", "agent", "step", "tier", "snapshot", "snapshots_tried", "paths", "error", "exit_code",
          "host", "repository", "kept_aside")
#: Long text fields shown as indented blocks.
_BLOCKS = ("start_output", "health_output", "check_output", "hook_output")


def _line(value: Any) -> str:
    if isinstance(value, list):
        if len(value) > 1:  # one item a line: snapshots tried with why each failed read better so
            return "".join(f"\n  - {v}" for v in value)
        return ", ".join(str(v) for v in value)
    return str(value)


def _field(key: str, value: Any) -> str:
    text = _line(value)
    return f"{key}:{text}" if text.startswith("\n") else f"{key}: {text}"


def alert_message(event: dict[str, Any], title_prefix: str = "snap") -> tuple[str, str]:
    """(title, body) for a failed event."""
    command = event.get("command", "snap")
    what = event.get("agent") or event.get("tier") or ""
    title = f"{title_prefix}: {command}{' ' + str(what) if what else ''} failed on {event.get('host', '?')}"
    lines = [_field(key, event[key]) for key in _SHOWN if event.get(key) not in (None, "", [])]
    for problem in event.get("problems", [])[:20]:
        if isinstance(problem, dict):
            where = ", ".join(f"{k} {problem[k]}" for k in ("pack", "blob") if problem.get(k))
            lines.append(f"problem: {problem.get('kind', '')}: {problem.get('message', '')}"
                         + (f" ({where})" if where else ""))
            for user in problem.get("affected", [])[:5]:
                if isinstance(user, dict):
                    lines.append(f"  affects snapshot {user.get('snapshot', '')}: {_line(user.get('paths', ''))}")
    for key in _BLOCKS:
        text = event.get(key)
        if text:
            lines.append(f"{key.replace('_', ' ')} (last lines):")
            lines += ["  " + line for line in str(text).splitlines()]
    lines += ["", "event: " + json.dumps(event, default=str, sort_keys=True)]
    return title, "\n".join(lines)


def send_alert(urls: Sequence[str], title: str, body: str) -> list[str]:
    """Send to every URL; returns one warning per URL that is invalid or could not be reached."""
    if not urls:
        return []
    try:
        import apprise
    except ImportError:
        return ["notifications: the apprise package is not installed; nothing was sent"]
    # Apprise logs every failed delivery itself; the one warning we return says it better.
    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    warnings: list[str] = []
    for url in urls:
        sender = apprise.Apprise()
        if not sender.add(url):
            warnings.append(f"notifications: not a valid Apprise URL: {_redact(url)}")
            continue
        try:
            delivered = bool(sender.notify(body=body, title=title, notify_type=apprise.NotifyType.FAILURE))
        except Exception as exc:  # a plugin bug must not hide the failure being reported
            warnings.append(f"notifications: sending to {_redact(url)} failed: {exc}")
            continue
        if not delivered:
            warnings.append(f"notifications: could not deliver to {_redact(url)}")
    return warnings


def _redact(url: str) -> str:
    """The URL without a password (``scheme://user:SECRET@host`` -> ``scheme://user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
