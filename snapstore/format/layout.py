"""Names of the files in a repository: where a pack or a snapshot record lives.

These are part of the repository format (docs/format.md): ``packs/<xx>/<pack id hex>.pack`` and
``snapshots/<snapshot id>.json``, ``/``-separated names relative to the repository root.
"""

from __future__ import annotations

PACK_ID_SIZE = 16


def pack_name(pack: bytes) -> str:
    hexid = pack.hex()
    return f"packs/{hexid[:2]}/{hexid}.pack"


def snapshot_name(snap_id: str) -> str:
    return f"snapshots/{snap_id}.json"


def pack_id_of(name: str) -> bytes | None:
    """The pack id of a ``packs/xx/<hex>.pack`` name, or None for anything else."""
    stem = name.rsplit("/", 1)[-1]
    if not stem.endswith(".pack"):
        return None
    try:
        pack = bytes.fromhex(stem[: -len(".pack")])
    except ValueError:
        return None
    return pack if len(pack) == PACK_ID_SIZE else None
