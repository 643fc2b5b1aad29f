"""The dashboard's routes and pages (Starlette, Jinja2 templates, server-side SVG; no CDN).

Pages: overview ``/``, snapshots ``/snapshots`` and ``/snapshots/{id}``, browse
``/browse/{id}?path=P`` (directory listing, text/JSON view) and ``/download/{id}?path=P``, diff
``/diff?a=&b=&path=``, versions ``/versions?path=``, history ``/history``, restore ``/restore``
(only with ``allow_restore``), ``/metrics``. Each handler calls the core (the same functions as
the CLI) and renders; :class:`snapstore.web.guard.Guard` checks every request first.

Paths inside snapshots travel percent-encoded in the query (``path=``) and are decoded to bytes,
so names that are not UTF-8 work. Snapshot contents are never served inline as HTML: a
download is ``application/octet-stream`` with ``Content-Disposition: attachment``, and text is
shown escaped inside the page.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from snapstore.errors import NotFound, SnapError, UsageError
from snapstore.view.selectors import resolve_snapshot
from snapstore.web.access import RepoAccess, UiSettings
from snapstore.web.guard import CSRF_FIELD, Guard
from snapstore.web.jobs import RestoreJobs
from snapstore.web.overview import Overview

HERE = Path(__file__).resolve().parent
VIEW_CAP = 1024 * 1024  # bytes of a file shown in the page
LISTING_CAP = 20_000  # entries of one directory listed in the page
DIFF_CHANGES_CAP = 2000  # changes listed on the diff page
DIFF_CONTENT_CAP = 50  # modified files whose contents are compared on the diff page


def human_bytes(n: float | None) -> str:
    if not isinstance(n, int | float):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _when(moment: datetime | float | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def path_query(path: bytes) -> str:
    return quote_from_bytes(path, safe="/")


def query_bytes(request: Request, name: str) -> bytes:
    """A query parameter as raw bytes (``%ff`` stays the byte 0xff)."""
    raw = request.scope.get("query_string", b"")
    for pair in raw.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name.encode():
            return unquote_to_bytes(value.replace(b"+", b" "))
    return b""


def _show(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape").encode("utf-8", "replace").decode("utf-8", "replace") \
        if path else ""


class Dashboard:
    """One dashboard over one repository: the route handlers and their shared state."""

    def __init__(self, settings: UiSettings) -> None:
        self.settings = settings
        self.access = RepoAccess(settings)
        self.overview_data = Overview(self.access)
        self.jobs = RestoreJobs(self.access)
        self._details: dict[tuple[str, tuple[str, ...]], tuple[int, list[Any]]] = {}
        self._listings: dict[tuple[str, bytes], tuple[Markup, int]] = {}
        self._details_lock = threading.Lock()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(bytes=human_bytes, when=_when, pq=path_query, show=_show,
                           q=lambda s: quote(str(s), safe=""))
        env.globals.update(allow_restore=settings.allow_restore, CSRF_FIELD=CSRF_FIELD)

    # -- helpers -----------------------------------------------------------------------------
    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("csrf", request.scope.get("state", {}).get("csrf", ""))
        context.setdefault("repository", self.settings.repository)
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SnapError)
        status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, UsageError) else 409
        return self.page(request, "error.html", status=status, message=exc.message, kind=exc.kind)

    def warm(self) -> None:
        """What the first page load would do once, done before it comes (the server calls this
        in a thread as it starts): the growth walk over every snapshot, the templates compiled,
        the plot module imported. A request arriving meanwhile waits for the walk, never
        repeats it. Failures are left for that request to report."""
        try:
            from snapstore.web import plots  # noqa: F401  (imported for its cost)

            for name in ("overview.html", "snapshots.html", "snapshot.html", "browse.html", "error.html"):
                self.templates.env.get_template(name)
            self.overview_data.state()
        except Exception:  # noqa: BLE001 - a warm-up only; the request path says what went wrong
            pass

    # -- overview ----------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        from snapstore.web.plots import Series, line_chart

        state = self.overview_data.state()
        size = Series("stored", "#2b6cb0", [(p.snapshot.time, float(p.stored_bytes)) for p in state.growth])
        logical = Series("logical", "#a0aec0", [(p.snapshot.time, float(p.logical_bytes)) for p in state.growth])
        dedup = Series("dedup x", "#c05621", [(p.snapshot.time, p.dedup) for p in state.growth])
        chart = line_chart([logical, size], title="Repository size and dedup over time", unit=human_bytes,
                           right=dedup, right_unit=lambda v: f"{v:.1f}x")
        last = state.growth[-1] if state.growth else None
        return self.page(request, "overview.html", state=state, chart=chart, last=last)

    def metrics(self, request: Request) -> Response:
        from snapstore.web.metrics import render_metrics

        body, content_type = render_metrics(self.overview_data)
        return Response(body, media_type=content_type)

    # -- snapshots -----------------------------------------------------------------------------
    def snapshots(self, request: Request) -> Response:
        from snapstore.web.plots import timeline

        tier = request.query_params.get("tier") or None
        tag = request.query_params.get("tag") or None
        host = request.query_params.get("host") or None
        with self.access.open() as repo:
            every = repo.snapshots()
            pinned = repo.index.pinned()
        snaps = [s for s in every if (tier is None or s.tier == tier) and (tag is None or tag in s.tags)
                 and (host is None or s.hostname == host)]
        chart = timeline(snaps, pinned, link=lambda s: f"/snapshots/{s.id}")
        return self.page(request, "snapshots.html", snaps=snaps[::-1], pinned=pinned, chart=chart,
                         tiers=sorted({s.tier for s in every}), hosts=sorted({s.hostname for s in every}),
                         tags=sorted({t for s in every for t in s.tags}), tier=tier, tag=tag, host=host)

    def snapshot(self, request: Request) -> Response:
        from snapstore.ops.stats import frees_of, path_usage_of

        with self.access.open() as repo:
            snap = resolve_snapshot(repo, request.path_params["snap"])
            every = repo.snapshots()
            growth = {p.snapshot.id: p for p in self.overview_data.growth(repo, every)}
            index = [s.id for s in every].index(snap.id)
            before = growth[every[index - 1].id] if index else None
            here = growth[snap.id]
            added = here.stored_bytes - (before.stored_bytes if before else 0)
            # a snapshot's contents never change and what forgetting it frees changes only with the
            # set of snapshots: both are kept for that set (a few entries; the walk is the cost)
            key = (snap.id, tuple(s.id for s in every))
            with self._details_lock:
                found = self._details.get(key)
            if found is None:
                found = (frees_of(repo, [snap]), path_usage_of(repo, [snap], depth=1))
                with self._details_lock:
                    self._details[key] = found
                    while len(self._details) > 32:
                        self._details.pop(next(iter(self._details)))
            frees, paths = found
            pinned = snap.id in repo.index.pinned()
        return self.page(request, "snapshot.html", snap=snap, added=added, frees=frees, paths=paths, pinned=pinned)

    # -- browse --------------------------------------------------------------------------------
    def browse(self, request: Request) -> Response:
        from snapstore.format.tree import DIR, FILE, KIND_NAMES
        from snapstore.view.diff import is_json_name, looks_binary
        from snapstore.view.vfs import SnapshotView, as_bytes_path

        path = as_bytes_path(query_bytes(request, "path"))
        with self.access.open() as repo:
            snap = resolve_snapshot(repo, request.path_params["snap"])
            view = SnapshotView(repo)
            entry = view.lookup(snap, path)
            crumbs = _crumbs(path)
            if entry.kind == DIR:
                # a snapshot's directory never changes: its rendered rows are kept (a few directories)
                key = (snap.id, path)
                with self._details_lock:
                    listed = self._listings.get(key)
                if listed is None:
                    entries = view.listdir(entry)
                    listed = (listing_rows(snap.id, path, entries[:LISTING_CAP]), len(entries))
                    with self._details_lock:
                        self._listings[key] = listed
                        while len(self._listings) > 16:
                            self._listings.pop(next(iter(self._listings)))
                rows, count = listed
                return self.page(request, "browse.html", snap=snap, path=path, crumbs=crumbs, rows=rows,
                                 count=count, more=max(0, count - LISTING_CAP))
            text = note = None
            if entry.kind != FILE:
                note = f"a {KIND_NAMES[entry.kind]}" + (f" pointing to {_show(entry.target)}" if entry.target else "")
            elif entry.size > VIEW_CAP:
                note = f"{human_bytes(entry.size)}: too large to show here; download it"
            else:
                data = view.read(entry, 0, entry.size)
                if looks_binary(data):
                    note = "binary file; download it"
                else:
                    text = data.decode("utf-8", "replace")
                    if is_json_name(path):
                        try:
                            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                        except ValueError:
                            note = "not valid JSON; shown as text"
        return self.page(request, "file.html", snap=snap, path=path, crumbs=crumbs, entry=entry, text=text,
                         note=note, is_file=entry.kind == FILE)

    def download(self, request: Request) -> Response:
        from snapstore.errors import PathNotFound
        from snapstore.format.tree import FILE
        from snapstore.view.vfs import SnapshotView, as_bytes_path

        path = as_bytes_path(query_bytes(request, "path"))
        with self.access.open() as repo:
            snap = resolve_snapshot(repo, request.path_params["snap"])
            entry = SnapshotView(repo).lookup(snap, path)
        if entry.kind != FILE:
            raise PathNotFound(f"not a regular file in snapshot {snap.short_id}: {_show(path) or '/'}")
        access = self.access

        def stream() -> Iterator[bytes]:
            with access.open() as repo:
                yield from SnapshotView(repo).iter_file(entry)

        name = os.path.basename(path.decode("utf-8", "replace")) or "file"
        disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
        return StreamingResponse(stream(), media_type="application/octet-stream",
                                 headers={"content-disposition": disposition, "content-length": str(entry.size)})

    # -- diff and versions ------------------------------------------------------------------------
    def diff(self, request: Request) -> Response:
        from snapstore.view.compare import content_of, iter_changes, pick_pair
        from snapstore.view.diff import DEFAULT_CONTENT_CAP, MODIFIED, Tally
        from snapstore.view.vfs import SnapshotView, as_bytes_path

        spec_a = request.query_params.get("a") or None
        spec_b = request.query_params.get("b") or None
        path = as_bytes_path(query_bytes(request, "path"))
        with self.access.open() as repo:
            every = repo.snapshots()[::-1]
            if spec_a is None:
                return self.page(request, "diff.html", every=every, old=None, new=None, path=path)
            old, new = pick_pair(repo, spec_a, spec_b)
            view = SnapshotView(repo)
            tally = Tally()
            rows: list[dict[str, Any]] = []
            compared = 0
            for change in iter_changes(view, old, new, [path]):
                tally.add(change)
                if len(rows) >= DIFF_CHANGES_CAP:
                    continue
                content = None
                if change.kind == MODIFIED and compared < DIFF_CONTENT_CAP:
                    content = content_of(view, change, DEFAULT_CONTENT_CAP)
                    compared += content is not None
                rows.append({"change": change, "path": path_query(change.path), "content": content})
        return self.page(request, "diff.html", every=every, old=old, new=new, path=path, rows=rows,
                         summary=tally.summary(), capped=tally.summary().total > len(rows))

    def versions(self, request: Request) -> Response:
        from snapstore.view.compare import lookup_or_none
        from snapstore.view.versions import collect_versions
        from snapstore.view.vfs import SnapshotView, as_bytes_path

        path = as_bytes_path(query_bytes(request, "path"))
        tier = request.query_params.get("tier") or None
        history = None
        if path:
            with self.access.open() as repo:
                snaps = [s for s in repo.snapshots() if tier is None or s.tier == tier]
                view = SnapshotView(repo)
                history = collect_versions((s, lookup_or_none(view, s, path)) for s in snaps)
        return self.page(request, "versions.html", path=path, tier=tier, history=history)

    # -- history -------------------------------------------------------------------------------
    def history(self, request: Request) -> Response:
        from snapstore.agent.history import filter_events, read_events

        params = request.query_params
        read = read_events(self.settings.history)
        events = filter_events(read.events, tier=params.get("tier") or None, command=params.get("command") or None,
                               agent=params.get("agent") or None, failures=params.get("failures") == "1")
        commands = sorted({str(e.get("command", "")) for e in read.events})
        tiers = sorted({str(e["tier"]) for e in read.events if e.get("tier")})
        return self.page(request, "history.html", events=events[::-1][:1000], total=len(events), commands=commands,
                         tiers=tiers, params=params, bad_lines=read.bad_lines, log=str(self.settings.history))

    # -- restore -------------------------------------------------------------------------------
    def restore_form(self, request: Request) -> Response:
        with self.access.open() as repo:
            every = repo.snapshots()[::-1]
        return self.page(request, "restore.html", every=every, snapshot=request.query_params.get("snapshot", ""),
                         path=query_bytes(request, "path"), target="", overwrite=False, problem=None)

    async def restore_confirm(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await request.form()
        snapshot, path, target = (str(form.get(k, "")).strip() for k in ("snapshot", "path", "target"))
        overwrite = form.get("overwrite") == "1"
        if form.get("confirmed") == "1":
            try:
                job = await run_in_threadpool(self.jobs.start, snapshot, [path] if path else [], target,
                                              overwrite=overwrite)
            except SnapError as exc:
                return await run_in_threadpool(self._restore_problem, request, snapshot, path, target, overwrite,
                                               exc.message)
            return RedirectResponse(f"/restore/jobs/{job.id}", status_code=303)
        return await run_in_threadpool(self._restore_preview, request, snapshot, path, target, overwrite)

    def _restore_problem(self, request: Request, snapshot: str, path: str, target: str, overwrite: bool,
                         problem: str) -> Response:
        with self.access.open() as repo:
            every = repo.snapshots()[::-1]
        return self.page(request, "restore.html", status=400, every=every, snapshot=snapshot,
                         path=path.encode("utf-8", "surrogateescape"), target=target, overwrite=overwrite,
                         problem=problem)

    def _restore_preview(self, request: Request, snapshot: str, path: str, target: str, overwrite: bool) -> Response:
        from snapstore.ops.restore import check_target
        from snapstore.ops.stats import BlobWalker, RepoSizes
        from snapstore.view.vfs import SnapshotView

        if not target:
            return self._restore_problem(request, snapshot, path, target, overwrite, "give a target directory")
        try:
            with self.access.open() as repo:
                snap = resolve_snapshot(repo, snapshot)
                entry = SnapshotView(repo).lookup(snap, path)
                usage = BlobWalker(repo.read_tree, RepoSizes(repo)).add_entry(entry)
            check_target(os.path.abspath(target), overwrite)
        except SnapError as exc:
            return self._restore_problem(request, snapshot, path, target, overwrite, exc.message)
        return self.page(request, "restore_confirm.html", snap=snap, path=path, target=os.path.abspath(target),
                         overwrite=overwrite, usage=usage)

    def restore_job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job"])
        if job is None:
            raise NotFound("no such restore job")
        return self.page(request, "restore_job.html", job=job)

    def restore_job_json(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job"])
        if job is None:
            raise NotFound("no such restore job")
        return JSONResponse(job.to_json())


def listing_rows(snap_id: str, path: bytes, entries: list[Any]) -> Markup:
    """The rows of a directory listing, built here rather than in the template: a directory of
    10,000 entries renders in tens of milliseconds instead of seconds (every value escaped)."""
    from snapstore.format.tree import DIR, FILE, KIND_NAMES

    out: list[str] = []
    for e in entries:
        rel = path + b"/" + e.name if path else e.name
        q = path_query(rel)
        name = escape(_show(e.name))
        # the page is /browse/ID?path=...: a query-only link stays in this snapshot (and keeps rows short)
        link = f'<a href="?path={q}">{name}{"/" if e.kind == DIR else ""}</a>'
        size = human_bytes(e.size) if e.kind == FILE else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.mtime_ns / 1e9)) if e.mtime_ns else "-"
        mode = stat.filemode(e.mode) if e.mode else ""
        extra = f'<a class="download" href="/download/{snap_id}?path={q}">download</a>' if e.kind == FILE else ""
        out.append(f'<tr class="entry" data-name="{name}"><td>{link}</td><td>{KIND_NAMES[e.kind]}</td>'
                   f'<td class="num">{size}</td><td><code>{mode}</code></td><td>{when}</td><td>{extra}</td></tr>\n')
    return Markup("".join(out))


def _crumbs(path: bytes) -> list[tuple[str, str]]:
    """(name, path query) of each parent directory of ``path`` and of itself."""
    parts = path.split(b"/") if path else []
    return [(_show(p), path_query(b"/".join(parts[: i + 1]))) for i, p in enumerate(parts)]


def create_app(settings: UiSettings, *, hosts: set[str], cookie: str = "snap_ui", warm: bool = False) -> Guard:
    """The dashboard as an ASGI application, behind its :class:`Guard`; with ``warm``, a thread
    starts doing what the first page load needs (:meth:`Dashboard.warm`)."""
    board = Dashboard(settings)
    if warm:
        threading.Thread(target=board.warm, name="snap-ui-warm", daemon=True).start()
    routes = [
        Route("/", board.overview),
        Route("/metrics", board.metrics),
        Route("/snapshots", board.snapshots),
        Route("/snapshots/{snap}", board.snapshot),
        Route("/browse/{snap}", board.browse),
        Route("/download/{snap}", board.download),
        Route("/diff", board.diff),
        Route("/versions", board.versions),
        Route("/history", board.history),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    if settings.allow_restore:
        routes += [
            Route("/restore", board.restore_form),
            Route("/restore", board.restore_confirm, methods=["POST"]),
            Route("/restore/jobs/{job}.json", board.restore_job_json),  # before {job}, which would match it
            Route("/restore/jobs/{job}", board.restore_job),
        ]
    app = Starlette(routes=routes, exception_handlers={SnapError: board.error})
    app.state.dashboard = board
    return Guard(app, token=settings.token, hosts=hosts, cookie=cookie)
