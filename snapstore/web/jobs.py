"""Restores started from the dashboard: each runs :func:`snapstore.ops.restore.restore_snapshot`
on a thread of its own and keeps its progress where the page can poll it.

A job is logged in the history log like ``snap restore`` (command ``restore``, with the
snapshot, files, bytes and target), so the dashboard's history page shows it too.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from snapstore.errors import SnapError
from snapstore.web.access import RepoAccess


@dataclass
class RestoreJob:
    """One restore: what, where, and how far it got."""

    id: str
    snapshot: str
    short_id: str
    paths: list[str]
    target: str
    total_bytes: int
    files: int = 0
    bytes: int = 0
    current: str = ""
    state: str = "running"  # running, done, partial, failed
    message: str = ""
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "snapshot": self.snapshot, "paths": self.paths, "target": self.target,
                "state": self.state, "files": self.files, "bytes": self.bytes, "total_bytes": self.total_bytes,
                "current": self.current, "message": self.message, "errors": self.errors[:20],
                "seconds": round(self.seconds or time.monotonic() - self.started, 2)}


class RestoreJobs:
    """The jobs of one dashboard (kept for its life; a few per session)."""

    def __init__(self, access: RepoAccess) -> None:
        self.access = access
        self._jobs: dict[str, RestoreJob] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> RestoreJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, snapshot_id: str, paths: list[str], target: str, *, overwrite: bool) -> RestoreJob:
        """Check the request (snapshot, paths, target) now, so errors show on the form; then
        restore on a thread."""
        from snapstore.ops.restore import check_target, select
        from snapstore.ops.stats import BlobWalker, RepoSizes
        from snapstore.view.selectors import resolve_snapshot
        from snapstore.view.vfs import SnapshotView

        target = os.path.abspath(target)
        with self.access.open() as repo:
            snap = resolve_snapshot(repo, snapshot_id)
            view = SnapshotView(repo)
            select(view, snap, paths)  # every path exists, before anything is written
            check_target(target, overwrite)
            walker = BlobWalker(repo.read_tree, RepoSizes(repo))
            total = sum(walker.add_entry(view.lookup(snap, p)).logical_bytes for p in (paths or [""]))
        job = RestoreJob(secrets.token_hex(8), snap.id, snap.short_id, paths, target, total)
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, overwrite), name=f"restore-{job.id}", daemon=True).start()
        return job

    def _run(self, job: RestoreJob, overwrite: bool) -> None:
        from snapstore.ops.restore import restore_snapshot
        from snapstore.view.selectors import resolve_snapshot
        from snapstore.view.vfs import SnapshotView

        def progress(info: dict[str, object]) -> None:
            job.files = int(info.get("files", 0) or 0)  # type: ignore[call-overload]
            job.bytes = int(info.get("bytes", 0) or 0)  # type: ignore[call-overload]
            job.current = str(info.get("path", ""))

        tier = ""
        try:
            with self.access.open() as repo:
                snap = resolve_snapshot(repo, job.snapshot)
                tier = snap.tier
                stats = restore_snapshot(SnapshotView(repo), snap, job.paths, job.target, overwrite=overwrite,
                                         progress=progress)
            job.files, job.bytes = stats.files, stats.bytes
            job.errors = list(stats.errors)
            job.state = "partial" if stats.errors or stats.holes else "done"
            job.message = f"restored {stats.files} files into {job.target}"
            code = 3 if job.state == "partial" else 0
        except SnapError as exc:
            job.state, job.message, code = "failed", exc.message, exc.exit_code
        except Exception as exc:  # a thread must not die silently: the page shows what happened
            job.state, job.message, code = "failed", f"{type(exc).__name__}: {exc}", 1
        job.seconds = time.monotonic() - job.started
        self._log(job, tier, code)

    def _log(self, job: RestoreJob, tier: str, code: int) -> None:
        from snapstore.agent import history

        event = {"snapshot": job.snapshot, "tier": tier or None, "files": job.files, "bytes": job.bytes,
                 "duration_s": round(job.seconds, 3), "target": job.target, "via": "ui"}
        done = history.complete_event(event, command="restore", exit_code=code,
                                      error=job.message if code else "", repository=self.access.settings.repository)
        try:
            history.append_event(self.access.settings.history, done)
        except OSError:
            pass  # the restore itself is what matters; the page shows its outcome
