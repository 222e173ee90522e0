"""Health, readiness and metrics answer within 50 ms while the largest request runs."""

from __future__ import annotations

import threading
import time

import httpx2 as httpx

from service.settings import DEFAULT_MAX_IN, DEFAULT_MAX_PROCESSES
from tests.utils import run_service

CAP_REQUEST = f"/?in={DEFAULT_MAX_IN}&nap=0&processes={DEFAULT_MAX_PROCESSES}"


def test_health_answers_fast_while_a_request_at_the_caps_runs() -> None:
    with run_service() as svc, httpx.Client(base_url=svc.url, timeout=10) as client:
        done = threading.Event()
        result: list[httpx.Response] = []

        def heavy() -> None:
            with httpx.Client(base_url=svc.url, timeout=60) as own:
                result.append(own.get(CAP_REQUEST))
            done.set()

        worker = threading.Thread(target=heavy)
        worker.start()
        time.sleep(0.05)
        latencies = []
        while not done.is_set():
            for path in ("/healthz", "/readyz", "/metrics"):
                started = time.perf_counter()
                assert client.get(path).status_code == 200
                latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
        worker.join()
        assert result[0].status_code == 200
        assert len(latencies) >= 10, "the capped request finished before health was probed"
        assert max(latencies) < 0.050, f"slowest health probe {max(latencies) * 1000:.1f} ms"
