"""``/metrics``: the repository's state for Prometheus, computed at each scrape.

Gauges (labels in braces): ``snap_last_snapshot_timestamp_seconds{tier}``,
``snap_last_snapshot_bytes{tier}`` (logical size), ``snap_last_snapshot_new_bytes{tier}``
(what its take stored), ``snap_snapshots{tier}``, ``snap_repository_pack_bytes``,
``snap_last_verify_success`` (1 ok, 0 failed; absent before any verify) and
``snap_last_verify_timestamp_seconds``; counter ``snap_failures`` (``_total``: events of the
history log whose result is not ``ok``, by command). A registry of its own per dashboard (no
process-wide state).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from snapstore.web.overview import Overview


class RepositoryCollector:
    """A prometheus_client collector over :class:`~snapstore.web.overview.Overview`."""

    def __init__(self, overview: Overview) -> None:
        self.overview = overview

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self.overview.state(with_growth=False)
        last_time = GaugeMetricFamily("snap_last_snapshot_timestamp_seconds", "Time of the newest snapshot per tier",
                                      labels=["tier"])
        last_bytes = GaugeMetricFamily("snap_last_snapshot_bytes", "Logical size of the newest snapshot per tier",
                                       labels=["tier"])
        last_new = GaugeMetricFamily("snap_last_snapshot_new_bytes", "Bytes the newest take of each tier stored",
                                     labels=["tier"])
        count = GaugeMetricFamily("snap_snapshots", "Snapshots per tier", labels=["tier"])
        for tier in state.tiers:
            last_time.add_metric([tier.tier], tier.last.time.timestamp())
            last_bytes.add_metric([tier.tier], tier.last.stats.bytes)
            last_new.add_metric([tier.tier], tier.last.stats.new_bytes)
            count.add_metric([tier.tier], tier.count)
        yield from (last_time, last_bytes, last_new, count)
        yield GaugeMetricFamily("snap_repository_pack_bytes", "Bytes in pack files", value=state.pack_bytes)
        if state.last_verify is not None:
            yield GaugeMetricFamily("snap_last_verify_success", "1 when the last verify found no damage",
                                    value=1 if state.last_verify.get("result") == "ok" else 0)
            yield GaugeMetricFamily("snap_last_verify_timestamp_seconds", "Time of the last verify",
                                    value=state.last_verify_time or 0)
        failures = CounterMetricFamily("snap_failures", "History events that did not succeed", labels=["command"])
        for command, n in sorted(state.failures.items()):
            failures.add_metric([command], n)
        yield failures


def render_metrics(overview: Overview) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RepositoryCollector(overview))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
