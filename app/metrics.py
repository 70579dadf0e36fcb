"""Prometheus metrics for /_maintenance/metrics: one collector reads the plain counters (``traffic.py``)
and the tracker's Snapshot at scrape time, so prometheus_client never runs on the request path.

Imported only when the admin app is built (off the start-up path), and only with MAINT_METRICS on.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Callable, Iterator
from typing import get_args

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from .progress.eta import State
from .progress.tracker import Tracker
from .traffic import Traffic

METRICS_PATH = "/_maintenance/metrics"
STATES: tuple[str, ...] = get_args(State)


def _version() -> str:
    try:
        return importlib.metadata.version("maintenance-shim")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class ShimCollector(Collector):
    """Every maintenance_shim_* series, built from the counters and one Snapshot per scrape."""

    def __init__(self, traffic: Traffic, tracker: Tracker, started_at: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.traffic = traffic
        self.tracker = tracker
        self.started_at = started_at
        self.clock = clock
        self.version = _version()

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        traffic = self.traffic
        requests = CounterMetricFamily(
            "maintenance_shim_requests",
            "Requests answered by the shim, by service, format, locale and status (health paths: format health).",
            labels=["service", "format", "locale", "status"],
        )
        for (service, fmt, locale, status), count in list(traffic.counts.items()):
            requests.add_metric([service, fmt, locale, str(status)], count)
        yield requests
        yield GaugeMetricFamily(
            "maintenance_shim_distinct_clients", "Distinct clients turned away or answered in this run.",
            value=traffic.distinct_clients(),
        )
        yield GaugeMetricFamily(
            "maintenance_shim_peak_requests_per_second", "Highest request rate over one-second windows this run.",
            value=traffic.peak_rps,
        )
        snapshot = self.tracker.snapshot()
        state = GaugeMetricFamily("maintenance_shim_state", "1 for the current maintenance state.", labels=["state"])
        for name in STATES:
            state.add_metric([name], 1.0 if snapshot.state == name else 0.0)
        yield state
        if snapshot.eta_seconds is not None:
            yield GaugeMetricFamily(
                "maintenance_shim_eta_seconds", "Seconds until the services are expected back (absent when unknown).",
                value=snapshot.eta_seconds,
            )
        yield GaugeMetricFamily(
            "maintenance_shim_retry_after_seconds", "The Retry-After the 503s carry now.", value=snapshot.retry_after
        )
        progress = snapshot.progress
        if progress is not None:
            yield GaugeMetricFamily("maintenance_shim_progress_step", "Training steps done.", value=progress.step)
            if progress.total is not None:
                yield GaugeMetricFamily(
                    "maintenance_shim_progress_total", "Training steps in all.", value=progress.total
                )
            if progress.fraction is not None:
                yield GaugeMetricFamily(
                    "maintenance_shim_progress_fraction", "Share of the training done (0-1).", value=progress.fraction
                )
            if progress.rate is not None:
                yield GaugeMetricFamily(
                    "maintenance_shim_progress_rate_steps_per_second", "Measured training step rate.",
                    value=progress.rate,
                )
            if progress.updated_at is not None:
                yield GaugeMetricFamily(
                    "maintenance_shim_seconds_since_progress", "Seconds since the last training progress.",
                    value=max(0.0, now - progress.updated_at.timestamp()),
                )
        run = self.tracker.run
        started = run.started_at if run is not None and run.started_at is not None else self.started_at
        yield GaugeMetricFamily(
            "maintenance_shim_maintenance_started_timestamp_seconds", "When maintenance began (Unix time).",
            value=started,
        )
        yield InfoMetricFamily(
            "maintenance_shim_build", "Version of the shim and of Python.",
            value={"version": self.version, "python": platform.python_version()},
        )


def registry_for(traffic: Traffic, tracker: Tracker, started_at: float) -> CollectorRegistry:
    """A registry of the shim's collector and the process collector (memory, CPU, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShimCollector(traffic, tracker, started_at))
    ProcessCollector(registry=registry)
    return registry


def add_metrics_route(app: FastAPI, registry: CollectorRegistry) -> None:
    """GET /_maintenance/metrics in Prometheus's text format (moves with the admin listener)."""

    @app.get(METRICS_PATH, response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics: requests, state, ETA, progress, start time, build."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
