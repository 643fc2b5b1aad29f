"""Which config file applies: ``--config``, else ``$SNAP_CONFIG``, else ./backup_schedule.json.

Kept apart from :mod:`snapstore.agent.config` so that finding out there is no config file costs no
pydantic import (commands such as ``snap cat`` and ``snap restore`` start faster).
"""

from __future__ import annotations

import os
from pathlib import Path

from snapstore.errors import ConfigError

DEFAULT_CONFIG_NAME = "backup_schedule.json"
CONFIG_ENV = "SNAP_CONFIG"


def find_config_path(explicit: str | None = None) -> Path | None:
    """The config file to use: ``explicit`` (``--config``), else ``$SNAP_CONFIG``, else
    ``./backup_schedule.json`` if it exists, else None. A named file that does not exist is a
    ``ConfigError``."""
    for value, origin in ((explicit, "--config"), (os.environ.get(CONFIG_ENV), CONFIG_ENV)):
        if value:
            path = Path(value).expanduser()
            if not path.exists():
                raise ConfigError(f"{value}: config file not found (from {origin})")
            if path.is_dir():
                raise ConfigError(f"{value}: is a directory, not a config file (from {origin})")
            return path
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None
