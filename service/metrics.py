"""Prometheus metrics of one app instance, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

PREFIX = "myfirstserverlessapp"
METHODS = ("heavyLifting", "heavyweightMethodA", "heavyweightMethodB", "heavyweightMethodC")
# The *_created series double the output and no dashboard here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


class Metrics:
    """Calls and durations per method, requests in flight, rejected requests, process metrics."""

    def __init__(self) -> None:
        # A registry per app (not prometheus_client's global one), so tests can build many apps.
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.calls = Counter(
            f"{PREFIX}_calls",
            "Calls of each heavy-lifting method.",
            ["method"],
            registry=self.registry,
        )
        self.duration = Histogram(
            f"{PREFIX}_duration_seconds",
            "Time each method spent on its own work (heavyLifting: the whole chain).",
            ["method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight",
            "Requests to / being served now.",
            registry=self.registry,
        )
        self.rejected = Counter(
            f"{PREFIX}_rejected_requests",
            "Requests answered 400, by the parameter at fault.",
            ["parameter"],
            registry=self.registry,
        )
        for method in METHODS:
            self.calls.labels(method)
            self.duration.labels(method)
