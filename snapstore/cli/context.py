"""What every command shares: where the repository is, the config file, lock waiting.

Repository location, first match wins: ``--repo PATH``, env ``SNAP_REPO``, ``repository`` in
the config file, ``$XDG_DATA_HOME/snapstore`` (``~/.local/share/snapstore``). Any of them may be
an ``s3://BUCKET/PREFIX`` URL; its endpoint comes from ``--s3-endpoint`` or ``SNAP_S3_ENDPOINT``.

History: a command hands what it did to the history log through :meth:`AppContext.record`
(one event per snapshot taken, restored, imported...); ``snapstore.cli.app.main`` completes the
events with the outcome and writes them (:meth:`AppContext.write_history`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from snapstore.cli.output import Output

if TYPE_CHECKING:
    from snapstore.repo.repository import Repository


def default_repo_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "snapstore")


#: ``--host HOST`` of the commands that name a snapshot: ``latest`` (and every selector) only
#: among that host's snapshots, for repositories that several hosts share.
HostOpt = Annotated[str | None, typer.Option("--host", metavar="HOST", help="Name snapshots among this host's "
                                             "only (latest = the newest of HOST).", show_default=False)]


@dataclass
class AppContext:
    repo_arg: str | None = None
    config_arg: str | None = None
    wait: float = 0.0
    quiet: bool = False
    subcommand: str = ""
    s3_endpoint: str | None = None
    output: Output = field(default_factory=Output)
    #: True once a command's options are parsed (its ``--json`` is then known)
    running: bool = False
    _config: Any = field(default=None, repr=False)
    _config_loaded: bool = False
    #: History events of this run; None: the command said nothing (one event records the
    #: outcome); []: the command did nothing worth a line (``take --due`` with nothing due).
    events: list[dict[str, Any]] | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def command(self) -> str:
        return f"snap {self.subcommand}".strip()

    def config(self) -> Any:
        """The loaded config file, or None when there is none (loaded once, lazily)."""
        if not self._config_loaded:
            self._config_loaded = True
            from snapstore.agent.configpath import find_config_path

            path = find_config_path(self.config_arg)
            if path is not None:
                from snapstore.agent.config import load_config  # pydantic: only when there is a file

                self._config = load_config(path)
        return self._config

    def repo_path(self) -> str:
        if self.repo_arg:
            return self.repo_arg
        env = os.environ.get("SNAP_REPO")
        if env:
            return env
        cfg = self.config()
        if cfg is not None and cfg.repository is not None:
            from snapstore.storage.locations import looks_remote

            if looks_remote(cfg.repository):
                return cfg.repository  # a URL is not relative to the config file's directory
        if cfg is not None and cfg.repository_path() is not None:
            return str(cfg.repository_path())
        return default_repo_path()

    def repo_location(self) -> str:
        """The repository as shown and recorded: an absolute path, or the ``s3://`` URL."""
        from snapstore.storage.locations import parse_location

        return parse_location(self.repo_path()).url

    def record(self, **fields: Any) -> dict[str, Any]:
        """Start a history event (update the returned dict as the work goes on)."""
        if self.events is None:
            self.events = []
        event = {k: v for k, v in fields.items() if v is not None}
        self.events.append(event)
        return event

    def record_nothing(self) -> None:
        """Say that this run did nothing worth a history line (unless it fails)."""
        if self.events is None:
            self.events = []

    def history_path(self) -> Path:
        """``history_file`` from the config, else ``system-history.jsonl`` beside the repository."""
        from snapstore.agent.history import default_history_path

        cfg = self.config()
        if cfg is not None and cfg.history_path() is not None:
            return Path(cfg.history_path())
        from snapstore.storage.locations import looks_remote

        if looks_remote(self.repo_path()):  # nothing local is "beside" a bucket
            state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
            return Path(state) / "snapstore" / "system-history.jsonl"
        return default_history_path(self.repo_path())

    def write_history(self, events: list[dict[str, Any]], *, exit_code: int, error: str = "",
                      alert: bool = False) -> None:
        """Complete ``events`` with the outcome, append them to the history log and, with
        ``alert``, alert (:meth:`alert`) for each one that did not succeed and was not alerted yet.
        Problems here are warnings: they never change the exit code or hide the error."""
        from snapstore.agent import history
        from snapstore.cli.output import warn
        from snapstore.errors import SnapError

        try:
            path = self.history_path()
            repository = self.repo_location()
        except SnapError:
            return  # the config itself is broken: already reported, nowhere to log
        duration = time.monotonic() - self.started
        done = [history.complete_event(e, command=self.subcommand, exit_code=exit_code, error=error,
                                       duration_s=duration, repository=repository) for e in events]
        for event in done:
            try:
                history.append_event(path, event)
            except OSError as exc:
                warn(f"snap: warning: cannot write history log {path}: {exc.strerror or exc}")
                break
        if alert:
            for event in done:
                if event.get("result") != "ok" and not event.get("alerted"):
                    self.alert(event)

    def alert(self, event: dict[str, Any]) -> None:
        """Tell a person about a failed event: the config's ``on_failure`` command and its
        ``notifications`` URLs. Problems are warnings; they never change the exit code."""
        from snapstore.cli.output import warn
        from snapstore.errors import SnapError

        try:
            cfg = self.config()
        except SnapError:  # a broken config was reported already; nothing to alert with
            return
        if cfg is None:
            return
        if cfg.on_failure:
            from snapstore.agent import history

            problem = history.run_alert(cfg.on_failure, event, cwd=cfg.base_dir)
            if problem:
                warn(f"snap: warning: {problem}")
        if cfg.notifications.urls:
            from snapstore.agent.notify import alert_message, send_alert

            title, body = alert_message(event, cfg.notifications.title)
            for problem in send_alert(cfg.notifications.urls, title, body):
                warn(f"snap: warning: {problem}")

    def open(self, mode: str = "read", *, check_index: bool = True) -> Repository:
        """The repository, opened with this run's location, lock wait and S3 endpoint: the one
        open path of every command (``check_index=False``: verify and repair, which must open
        an index that lost track of snapshot records)."""
        from snapstore.cli.output import warn
        from snapstore.repo.repository import Repository

        repo = Repository.open(self.repo_path(), mode=mode, wait=self.wait, command=self.command,
                               check_index=check_index, endpoint=self.s3_endpoint)
        for done in repo.healed:  # repaired by itself after a crash: said, never silent
            warn(f"snap: note: {done}")
        return repo
