"""This host's name, overridable with ``SNAP_HOSTNAME`` (containers, tests).

The one definition of the name that snapshots, leases, lock holder notes and history events
record: a container whose kernel host name changes on every start keeps one identity.
"""

from __future__ import annotations

import os
import socket


def host_name() -> str:
    """``SNAP_HOSTNAME`` when it is set, else the kernel's host name."""
    return os.environ.get("SNAP_HOSTNAME") or socket.gethostname()
