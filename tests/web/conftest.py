"""Browser tests of ``snap ui``: a real headless Chromium (Debian's ``chromium``) driven by
Selenium through Debian's version-matched ``/usr/bin/chromedriver``, against ``snap ui`` servers
started as real processes on 127.0.0.1.

- :func:`require_chromium`: fails when Chromium, its driver or Selenium is missing
  (``scripts/test.sh`` installs them); the browser tests never skip.
- ``ui_repo``: one repository for the module: two snapshots of an agent workspace whose
  ``priority_weights.json`` changes between them, a verify and a failed take in the history log.
- ``ui_server`` / ``restore_server``: ``snap ui --listen 127.0.0.1:0``, without and with
  ``--allow-restore``; each yields (base URL, token) and is stopped at the end.
- ``browser``: one Chromium for the module, with a fresh profile and a download directory.

Screenshots: with ``SNAP_UI_SCREENSHOTS=DIR`` each page a test visits is saved as DIR/NAME.png
(docs/ui.md shows the ones in docs/ui/, made with ``SNAP_UI_SCREENSHOTS=docs/ui``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_agent_z, run_snap

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
T1 = "2026-11-20T07:00:00Z"
T2 = "2026-11-21T07:00:00Z"


def require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    # the README's test command installs them: missing, they are a failure, never a skip
    pytest.fail(f"browser tests need {', '.join(missing)} (scripts/bootstrap.sh --with-browser installs them)")


@dataclass
class UiRepo:
    repo: Path
    workspace: Path
    old: dict[str, Any]  # snap take --json of the first snapshot
    new: dict[str, Any]


@pytest.fixture(scope="module")
def ui_repo(tmp_path_factory: pytest.TempPathFactory) -> UiRepo:
    base = tmp_path_factory.mktemp("ui")
    repo = base / "repo"
    ws = base / "ws"
    z = make_agent_z(ws, soul_lines=30)
    (z / "weights.bin").write_bytes(os.urandom(300_000))
    config = {"repository": str(repo), "tiers": {
        "daily": {"sources": ["agents"], "schedule": "0 7 * * *", "keep": 7},
        "weekly": {"sources": ["agents"], "schedule": "0 23 * * 0", "keep": 4}}}
    (ws / "backup_schedule.json").write_text(json.dumps(config))

    def snap(*args: str, now: str = T2) -> Any:
        result = run_snap("--config", str(ws / "backup_schedule.json"), *args, cwd=ws, env={"SNAP_NOW": now})
        return result

    assert snap("init", "--chunk-min", "16", "--chunk-avg", "64", "--chunk-max", "256").code == 0
    first = snap("take", "--tier", "weekly", "--json", now=T1)
    assert first.code == 0, first.err
    (z / "priority_weights.json").write_text(json.dumps({"weights": {"relevance": 0.57, "urgency": 0.3}}))
    with open(z / "memory" / "lessons.md", "a") as lessons:
        lessons.write("- and restore-tested\n")
    second = snap("take", "--tier", "daily", "--json")
    assert second.code == 0, second.err
    assert snap("pin", first.json()["id"]).code == 0  # type: ignore[index]
    assert snap("verify").code == 0
    assert snap("take", str(ws / "no-such-dir"), "--tier", "daily").code != 0  # an alert in the history log
    return UiRepo(repo, ws, first.json(), second.json())  # type: ignore[arg-type]


def _start(repo: UiRepo, *extra: str) -> Iterator[tuple[str, str]]:
    cmd = [sys.executable, "-m", "snapstore", "--config", str(repo.workspace / "backup_schedule.json"), "ui",
           "--listen", "127.0.0.1:0", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
    proc = subprocess.Popen(cmd, cwd=repo.workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("snap ui: http://127.0.0.1:"):
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"snap ui did not start: {line!r} {err}")
        url = line.split()[-1]
        base, _, token = url.partition("/?token=")
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def ui_server(ui_repo: UiRepo) -> Iterator[tuple[str, str]]:
    yield from _start(ui_repo)


@pytest.fixture(scope="module")
def restore_server(ui_repo: UiRepo) -> Iterator[tuple[str, str]]:
    yield from _start(ui_repo, "--allow-restore")


@dataclass
class Browser:
    driver: Any
    downloads: Path
    shots: Path | None

    def shot(self, name: str) -> None:
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(self.shots / f"{name}.png"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,760"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        shots = os.environ.get("SNAP_UI_SCREENSHOTS")
        yield Browser(driver, downloads, Path(shots) if shots else None)
    finally:
        driver.quit()
