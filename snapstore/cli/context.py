"""What every command shares: where the repository is, the config file, lock waiting.

Repository location, first match wins: ``--repo PATH``, env ``SNAP_REPO``, ``repository`` in
the config file, ``$XDG_DATA_HOME/snapstore`` (``~/.local/share/snapstore``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snapstore.repository import Repository


def default_repo_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "snapstore")


@dataclass
class AppContext:
    repo_arg: str | None = None
    config_arg: str | None = None
    wait: float = 0.0
    quiet: bool = False
    subcommand: str = ""
    _config: Any = field(default=None, repr=False)
    _config_loaded: bool = False

    @property
    def command(self) -> str:
        return f"snap {self.subcommand}".strip()

    def config(self) -> Any:
        """The loaded config file, or None when there is none (loaded once, lazily)."""
        if not self._config_loaded:
            self._config_loaded = True
            from snapstore.config import find_config_path, load_config

            path = find_config_path(self.config_arg)
            self._config = load_config(path) if path is not None else None
        return self._config

    def config_dir(self) -> Path | None:
        cfg = self.config()
        return None if cfg is None else cfg.base_dir

    def repo_path(self) -> str:
        if self.repo_arg:
            return self.repo_arg
        env = os.environ.get("SNAP_REPO")
        if env:
            return env
        cfg = self.config()
        if cfg is not None and cfg.repository_path() is not None:
            return str(cfg.repository_path())
        return default_repo_path()

    def open(self, mode: str = "read") -> Repository:
        from snapstore.repository import Repository

        return Repository.open(self.repo_path(), mode=mode, wait=self.wait, command=self.command)
