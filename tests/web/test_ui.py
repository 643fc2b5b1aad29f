"""``snap ui`` in a real headless Chromium: the pages show what the CLI shows, a download is the
file itself, restores exist only with --allow-restore, and requests without the token or from a
foreign Host are refused."""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import run_snap, tree_state
from tests.web.conftest import Browser, UiRepo

WAIT = 60  # seconds a page may take to reach the state a test waits for (a loaded 2-core machine)


def _open(browser: Browser, server: tuple[str, str], path: str = "/") -> None:
    base, token = server
    browser.driver.get(f"{base}/?token={token}")  # the URL carries the token once; a cookie after that
    browser.driver.get(base + path)


def _texts(browser: Browser, selector: str) -> list[str]:
    return [e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, selector)]


def test_overview_shows_the_plot_and_the_tiers(browser: Browser, ui_server: tuple[str, str], ui_repo: UiRepo) -> None:
    _open(browser, ui_server)
    assert browser.driver.current_url == ui_server[0] + "/"  # the token left the address bar
    lines = browser.driver.find_elements(By.CSS_SELECTOR, "#growth-plot svg polyline.series")
    assert {line.get_attribute("data-name") for line in lines} == {"logical", "stored", "dedup x"}
    assert all(len(line.get_attribute("points").split()) == 2 for line in lines)  # one point per snapshot
    assert browser.driver.find_element(By.ID, "snapshot-count").text == "2"
    assert browser.driver.find_element(By.ID, "last-verify").text == "ok"
    tiers = browser.driver.find_element(By.ID, "tiers").text
    assert "daily" in tiers and "weekly" in tiers and ui_repo.new["short_id"] in tiers
    assert "take" in browser.driver.find_element(By.ID, "alerts").text  # the failed take
    browser.shot("overview")
    _open(browser, ui_server, "/history?failures=1")
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "tr.event")
    assert rows and all("error" in r.get_attribute("class") for r in rows)
    browser.shot("history")


def test_snapshot_list_matches_snap_list(browser: Browser, ui_server: tuple[str, str], ui_repo: UiRepo) -> None:
    listed = run_snap("--repo", str(ui_repo.repo), "list", "--json").json()
    _open(browser, ui_server, "/snapshots")
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#snapshot-list tr.snapshot")
    shown = [{"id": r.get_attribute("data-id"), "tier": r.get_attribute("data-tier"),
              "files": int(r.get_attribute("data-files")), "bytes": int(r.get_attribute("data-bytes")),
              "pinned": "pinned" in r.text} for r in rows]
    assert shown == [{k: s[k] for k in ("id", "tier", "files", "bytes", "pinned")} for s in listed[::-1]]
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#timeline svg circle")) == len(listed)
    browser.shot("snapshots")
    browser.driver.find_element(By.LINK_TEXT, ui_repo.new["short_id"]).click()
    assert ui_repo.new["id"] in browser.driver.find_element(By.ID, "snapshot-facts").text
    assert "agents/" in browser.driver.find_element(By.ID, "paths").text
    browser.shot("snapshot")


def test_a_downloaded_file_is_byte_identical(browser: Browser, ui_server: tuple[str, str], ui_repo: UiRepo) -> None:
    _open(browser, ui_server, f"/browse/{ui_repo.new['id']}")
    for name in ("agents/", "Z/"):
        browser.driver.find_element(By.LINK_TEXT, name).click()
    browser.shot("browse")
    browser.driver.find_element(By.LINK_TEXT, "priority_weights.json").click()
    assert json.loads(browser.driver.find_element(By.ID, "file-text").text) == {
        "weights": {"relevance": 0.57, "urgency": 0.3}}
    browser.shot("file")
    browser.driver.back()
    row = browser.driver.find_element(By.CSS_SELECTOR, 'tr.entry[data-name="weights.bin"]')
    row.find_element(By.CSS_SELECTOR, "a.download").click()
    target = browser.downloads / "weights.bin"
    WebDriverWait(browser.driver, WAIT).until(lambda _d: target.exists())
    original = (ui_repo.workspace / "agents" / "Z" / "weights.bin").read_bytes()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(original).hexdigest()


def test_the_diff_page_shows_the_changed_json_key(browser: Browser, ui_server: tuple[str, str],
                                                  ui_repo: UiRepo) -> None:
    _open(browser, ui_server, f"/diff?a={ui_repo.old['id']}&b={ui_repo.new['id']}")
    changed = browser.driver.find_elements(By.CSS_SELECTOR, ".jsondiff tr.json-changed")
    cells = [[c.text for c in row.find_elements(By.TAG_NAME, "td")] for row in changed]
    assert ["weights.relevance", "0.42", "0.57"] in cells
    assert "agents/Z/memory/lessons.md" in browser.driver.find_element(By.ID, "changes").text
    browser.shot("diff")
    _open(browser, ui_server, "/versions?path=agents/Z/priority_weights.json")
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#versions tr")) == 1 + 2  # header + two versions
    browser.shot("versions")


def test_restore_only_with_allow_restore(browser: Browser, ui_server: tuple[str, str],
                                         restore_server: tuple[str, str], ui_repo: UiRepo, tmp_path: Path) -> None:
    _open(browser, ui_server)
    assert not browser.driver.find_elements(By.ID, "nav-restore")
    _open(browser, ui_server, "/restore")
    assert "Not Found" in browser.driver.page_source

    target = tmp_path / "restored"
    _open(browser, restore_server, f"/restore?snapshot={ui_repo.new['id']}&path=agents/Z")
    browser.driver.find_element(By.NAME, "target").send_keys(str(target))
    browser.shot("restore")
    browser.driver.find_element(By.ID, "restore-next").click()
    assert "restore now" in browser.driver.find_element(By.ID, "restore-confirm").text  # confirmation first
    assert not target.exists()
    browser.driver.find_element(By.ID, "restore-confirm").click()
    WebDriverWait(browser.driver, WAIT).until(
        lambda d: d.find_element(By.ID, "job-state").text in ("done", "partial", "failed"))
    assert browser.driver.find_element(By.ID, "job-state").text == "done", \
        browser.driver.find_element(By.ID, "job-message").text
    browser.shot("restore-job")
    assert tree_state(target / "agents" / "Z") == tree_state(ui_repo.workspace / "agents" / "Z")
    events = run_snap("--repo", str(ui_repo.repo), "history", "--command", "restore", "--json").json()
    assert events and events[-1]["snapshot"] == ui_repo.new["id"] and events[-1]["result"] == "ok"


def _request(server: tuple[str, str], path: str, *, host: str | None = None, headers: dict[str, str] | None = None,
             method: str = "GET", body: str | None = None) -> tuple[int, bytes]:
    url = urlsplit(server[0])
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        sent = dict(headers or {})
        if host is not None:
            sent["Host"] = host
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_requests_without_the_token_or_from_a_foreign_host_are_refused(
        browser: Browser, ui_server: tuple[str, str], restore_server: tuple[str, str]) -> None:
    base, token = ui_server
    port = urlsplit(base).port
    assert _request(ui_server, "/")[0] == 401
    assert _request(ui_server, "/snapshots", headers={"Cookie": f"snap_ui_{port}=wrong"})[0] == 401
    assert _request(ui_server, "/?token=wrong")[0] == 401
    assert _request(ui_server, f"/?token={token}", host=f"attacker.example:{port}")[0] == 421  # DNS rebinding
    bearer = {"Authorization": f"Bearer {token}"}
    assert _request(ui_server, "/", host=f"attacker.example:{port}", headers=bearer)[0] == 421
    status, metrics = _request(ui_server, "/metrics", headers=bearer)
    assert status == 200
    assert b"snap_repository_pack_bytes" in metrics and b'snap_last_snapshot_timestamp_seconds{tier="daily"}' in metrics
    assert b"snap_last_verify_success 1.0" in metrics and b'snap_failures_total{command="take"} 1.0' in metrics
    # a state-changing request needs the CSRF token too, and no foreign Origin
    _, other_token = restore_server
    auth = {"Authorization": f"Bearer {other_token}"}
    assert _request(restore_server, "/restore", method="POST", headers=auth, body="snapshot=x&target=/tmp/x")[0] == 403
    assert _request(restore_server, "/restore", method="POST", headers={**auth, "Origin": "http://attacker.example"},
                    body="snapshot=x")[0] == 403
    # a browser signed in to one server has no cookie for the other (cookies ignore ports: one name each)
    browser.driver.get(f"{base}/")
    browser.driver.delete_all_cookies()
    browser.driver.get(f"{base}/?token={token}")
    browser.driver.get(restore_server[0] + "/")
    assert "refused" in browser.driver.find_element(By.TAG_NAME, "body").text
