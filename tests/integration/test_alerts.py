"""Failure alerts through Apprise (``notifications.urls``) for take, verify and restore, each with
its own diagnostics, sent to a webhook on 127.0.0.1; ``on_failure`` still runs beside them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from snapstore.errors import ExitCode
from tests.integration.test_recover import Receiver, receiver, wait_for  # noqa: F401 (fixture)
from tests.integration.test_workflows import build_workspace, ok, snap_in


def _with_receiver(ws: Path, url: str) -> None:
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["notifications"] = {"urls": [url], "title": "snap@test"}
    (ws / "backup_schedule.json").write_text(json.dumps(config))


def _event(message: dict) -> dict:
    return json.loads(message["message"].split("event: ", 1)[1])


def test_every_failure_reaches_the_webhook_with_its_diagnostics(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    ws = build_workspace(tmp_path)
    _with_receiver(ws, receiver.url)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly", now="2026-11-29T23:00:00Z"))
    assert receiver.messages == []  # success: nobody is bothered

    # verify: which pack, which snapshots and paths
    packs = [os.path.join(d, f) for d, _s, files in os.walk(tmp_path / "repo" / "packs") for f in files]
    biggest = max(packs, key=os.path.getsize)
    middle = os.path.getsize(biggest) // 2
    with open(biggest, "r+b") as handle:
        handle.seek(middle)
        byte = handle.read(1)
        handle.seek(middle)
        handle.write(bytes([byte[0] ^ 0xFF]))
    res = snap_in(ws, "verify", "--read-data")
    assert res.code == ExitCode.DAMAGED
    wait_for(lambda: len(receiver.messages) == 1, "the verify alert")
    verify = receiver.messages[0]
    assert verify["title"].startswith("snap@test: verify failed") and verify["type"] == "failure"
    event = _event(verify)
    assert event["exit_code"] == ExitCode.DAMAGED and event["error"] != "exit code 4"
    assert event["problems"] and any(p.get("pack") for p in event["problems"])
    assert any(u.get("paths") for p in event["problems"] for u in p.get("affected", []))
    assert "problem: " in verify["message"] and "affects snapshot" in verify["message"]
    assert json.loads((ws / "alert.json").read_text())["command"] == "verify"  # on_failure ran too

    # take: the source that is missing
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["tiers"]["weekly"]["sources"] = ["agents", "no-such-dir"]
    (ws / "backup_schedule.json").write_text(json.dumps(config))
    assert snap_in(ws, "take", "--tier", "weekly").code == ExitCode.PARTIAL  # the rest is taken, incomplete
    wait_for(lambda: len(receiver.messages) == 2, "the take alert")
    assert "no-such-dir" in _event(receiver.messages[1])["error"]

    # restore: a target that is not empty
    res = snap_in(ws, "restore", "latest", "--target", str(ws))
    assert res.code == ExitCode.TARGET
    wait_for(lambda: len(receiver.messages) == 3, "the restore alert")
    assert _event(receiver.messages[2])["command"] == "restore"
    assert "not empty" in receiver.messages[2]["message"]


def test_an_unreachable_url_is_a_warning(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    _with_receiver(ws, "json://127.0.0.1:1/nobody")
    ok(snap_in(ws, "init"))
    res = snap_in(ws, "restore", "latest", "--target", str(ws))
    assert res.code == ExitCode.NOT_FOUND  # the failure's own code, not the alert's
    assert "snap: warning: notifications: could not deliver to json://127.0.0.1:1/nobody" in res.err
