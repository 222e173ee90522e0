"""A collector that refuses, hangs or answers 500 does not slow requests: p99 latency with it
stays within 1.2x of the same service without one, measured side by side."""

from __future__ import annotations

import statistics
import time

import httpx2 as httpx
import pytest

from e2e.context import free_port
from tests.utils import ZipkinReceiver, run_service

# Enough spans (5 a request) for full batches of 512 at the SDK's defaults, and enough samples
# for a p99 that machine noise moves little: between two identical services 0.87-1.05 measured
# with 2000; a refusing or failing collector 1.00-1.10; a hanging one 1.01-1.13, the cost of
# queueing spans at all while the export hangs (a 7 % median).
REQUESTS = 3000
QUERY = "/?in=10000&nap=0&processes=50"
# The first export, the SDK's schedule delay (5 s) after the first span, loads the Zipkin exporter
# (once, in the exporting thread, off the path of the first answer); measured after it.
FIRST_EXPORT_SECONDS = 6


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@pytest.mark.parametrize("mode", ["refuse", "hang", "fail"])
def test_a_broken_collector_costs_requests_nothing(mode: str) -> None:
    with ZipkinReceiver(mode=mode, hang=60).running() as zipkin:
        endpoint = (
            f"http://127.0.0.1:{free_port()}/api/v2/spans" if mode == "refuse" else zipkin.endpoint
        )
        with (
            run_service() as plain,
            run_service(OTEL_EXPORTER_ZIPKIN_ENDPOINT=endpoint) as faulty,
            httpx.Client(timeout=10) as client,
        ):
            base: list[float] = []
            broken: list[float] = []
            pair = [(plain.url, base), (faulty.url, broken)]
            for url, _ in pair:
                assert client.get(url + QUERY).status_code == 200
            time.sleep(FIRST_EXPORT_SECONDS)
            for i in range(REQUESTS):  # interleaved, in turn first, so both see the same noise
                for url, latencies in pair if i % 2 else pair[::-1]:
                    started = time.perf_counter()
                    assert client.get(url + QUERY).status_code == 200
                    latencies.append(time.perf_counter() - started)
            if mode != "refuse":
                assert zipkin.posts >= 1, "the exporter never reached the collector"
            code, stderr = faulty.stop(timeout=20)
    assert _p99(broken) <= 1.2 * _p99(base), (
        f"p99 {_p99(broken) * 1000:.2f} ms with a {mode} collector, "
        f"{_p99(base) * 1000:.2f} ms without one"
    )
    assert code == 0, stderr
