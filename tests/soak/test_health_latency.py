"""Health, readiness and metrics answer within 50 ms while the largest request runs."""

from __future__ import annotations

from service.settings import DEFAULT_MAX_IN, DEFAULT_MAX_PROCESSES
from tests.utils import health_during, run_service

CAP_REQUEST = f"/?in={DEFAULT_MAX_IN}&nap=0&processes={DEFAULT_MAX_PROCESSES}"


def test_health_answers_fast_while_a_request_at_the_caps_runs() -> None:
    with run_service() as svc:
        status, latencies = health_during(svc.url, CAP_REQUEST)
    assert status == 200
    assert len(latencies) >= 10, "the capped request finished before health was probed"
    assert max(latencies) < 0.050, f"slowest health probe {max(latencies) * 1000:.1f} ms"
