"""Commands between repositories: ``copy`` (local or S3, in either direction)."""

from __future__ import annotations

from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import Progress, echo, emit_json, human_bytes

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def cmd_copy(
    ctx: typer.Context,
    snapshots: Annotated[list[str] | None, typer.Argument(help="Snapshots to copy (id prefix, latest, "
                                                          "latest:TIER); default: all, or see --tier/--latest.",
                                                          show_default=False)] = None,
    to: Annotated[str, typer.Option("--to", help="Target repository: a path or s3://BUCKET/PREFIX.",
                                    show_default=False)] = "",
    to_s3_endpoint: Annotated[str | None, typer.Option("--to-s3-endpoint", help="S3 endpoint of the target "
                                                       "(default: the source's --s3-endpoint / "
                                                       "$SNAP_S3_ENDPOINT).", show_default=False)] = None,
    init: Annotated[bool, typer.Option("--init", help="Create the target if it does not exist (same chunker "
                                       "and compression settings as the source).")] = False,
    tier: Annotated[str | None, typer.Option("--tier", "-t", help="Copy the snapshots of this tier.",
                                             show_default=False)] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest snapshot (of --tier, if given).")] = False,
    to_password_file: Annotated[str | None, typer.Option("--to-password-file", help="The target's password "
                                                         "(else $SNAP_TO_PASSWORD..., else the source's).",
                                                         show_default=False)] = None,
    to_password_command: Annotated[str | None, typer.Option("--to-password-command", help="Run this command "
                                                            "(no shell) for the target's password.",
                                                            show_default=False)] = None,
    to_encryption: Annotated[str, typer.Option("--to-encryption", help="With --init: repokey (default) or "
                                               "none.")] = "repokey",
    json_out: JsonOpt = False,
) -> None:
    """Copy snapshots to another repository, sending only the data it lacks, and check what was sent."""
    from snapstore.errors import RepositoryNotFound, UsageError
    from snapstore.ops.copy import copy_snapshots, select_snapshots
    from snapstore.repo.passwords import PasswordOptions
    from snapstore.repo.repository import ENCRYPTION_SCHEME, Repository
    from snapstore.storage.locations import parse_location

    app: AppContext = ctx.obj
    if not to:
        raise UsageError("--to REPOSITORY is required (a path or s3://BUCKET/PREFIX)")
    target_url = parse_location(to).url
    target_endpoint = to_s3_endpoint or app.s3_endpoint
    progress = Progress(not app.quiet and not json_out)
    with app.open("read") as source:
        chosen = select_snapshots(source, list(snapshots or []), tier=tier, latest=latest)
        target_password = PasswordOptions.for_target(to_password_file, to_password_command)
        try:
            target = Repository.open(target_url, mode="write", wait=app.wait, command=app.command,
                                     endpoint=target_endpoint, password=target_password.current)
        except RepositoryNotFound:
            if not init:
                raise
            if to_encryption not in ("repokey", "none"):
                raise UsageError(f"unknown --to-encryption {to_encryption!r} (repokey or none)") from None
            from snapstore.cli.keys import kdf_profile_choice

            secret = target_password.current(f"password for the new repository {target_url}: ") \
                if to_encryption == "repokey" else None
            from dataclasses import replace

            # an encrypted source's seed is a secret of its key material: never into a config
            chunker = replace(source.config.chunker, seed=0) if source.config.encrypted else source.config.chunker
            Repository.init(target_url, chunker=chunker,
                            compression_level=source.config.compression_level,
                            pack_size=source.config.pack_size, endpoint=target_endpoint,
                            encryption=ENCRYPTION_SCHEME if to_encryption == "repokey" else "none",
                            password=secret, kdf_profile=kdf_profile_choice(None))
            target = Repository.open(target_url, mode="write", wait=app.wait, command=app.command,
                                     endpoint=target_endpoint, password=target_password.current)
        with target:
            result = copy_snapshots(source, target, chosen, progress=progress)
            sent_net = target.backend.stats().sent_bytes if target.remote else None
        fetched = source.fetched_bytes()
    progress.done()
    app.record(snapshot=",".join(str(s["id"]) for s in result.copied) or None, bytes=result.bytes_sent,
               duration_s=round(result.duration_s, 3), target=target_url)
    if json_out:
        out: dict[str, object] = {"target": target_url, **result.to_json()}
        if fetched is not None:
            out["fetched_bytes"] = fetched
        if sent_net is not None:
            out["uploaded_bytes"] = sent_net
        emit_json(out)
        return
    for item in result.copied:
        echo(f"copied {item['short_id']}  {item['tier']:<10} {item['time']}")
    for item in result.skipped:
        echo(f"skipped {item['short_id']}  {item['tier']:<10} {item['time']} (already in the target)")
    echo(f"{len(result.copied)} snapshot(s) copied to {target_url}, {len(result.skipped)} already there; sent "
         f"{result.blobs_sent} chunks and {result.trees_sent} trees ({human_bytes(result.bytes_sent)}) in "
         f"{result.packs_written} packs, every one checked, in {result.duration_s:.2f} s")


def register(app: typer.Typer) -> None:
    app.command("copy")(cmd_copy)
