"""One open repository shared by the requests being served, closed when none needs it.

The dashboard must not hold the repository's read lock while idle (gc needs the repository to
itself), and LMDB forbids opening one environment twice in a process; so requests share one
:class:`~snapstore.repo.repository.Repository`, opened by the first request that needs it and
closed when the last one is done. Read methods of Repository are safe from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snapstore.repo.repository import Repository


@dataclass(frozen=True)
class UiSettings:
    """What the front end that starts the dashboard resolved for it."""

    repository: str  # a path or an s3:// URL
    history: Path  # the history log
    schedules: dict[str, str | None] = field(default_factory=dict)  # tier -> cron schedule (config)
    endpoint: str | None = None  # S3 endpoint
    allow_restore: bool = False
    token: str = ""


class RepoAccess:
    """``with access.open() as repo:``: the shared open repository (see the module docstring)."""

    def __init__(self, settings: UiSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._repo: Repository | None = None
        self._users = 0

    @contextmanager
    def open(self) -> Iterator[Repository]:
        from snapstore.repo.repository import Repository

        with self._lock:
            if self._repo is None:
                self._repo = Repository.open(self.settings.repository, mode="read", command="snap ui",
                                             endpoint=self.settings.endpoint)
            self._users += 1
            repo = self._repo
        try:
            yield repo
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._repo is not None:
                    self._repo.close()
                    self._repo = None
