"""`faas load` end to end against the real service on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx

from e2e.context import free_port
from e2e.pki import Authority
from e2e.poll import until
from ops import commands
from ops.requester import Work
from tests.utils import ROOT, faas, run_service, wait_in_flight

HEAVY_CALLS = re.compile(r'myfirstserverlessapp_calls_total\{method="heavyLifting"\} ([0-9.]+)')
IN_FLIGHT = re.compile(r"myfirstserverlessapp_requests_in_flight ([0-9.]+)")


def _load(work: Work) -> dict[str, Any]:
    out = io.StringIO()
    code = commands.run_load(
        work=work, as_json=True, watch=None, namespace=None, watch_after=0.0, plot_path=None,
        out=out, err=io.StringIO(),
    )  # fmt: skip
    assert code == 0
    report: dict[str, Any] = json.loads(out.getvalue())["report"]
    return report


def _metric(url: str, pattern: re.Pattern[str]) -> float:
    match = pattern.search(httpx.get(f"{url}/metrics").text)
    assert match is not None
    return float(match.group(1))


def test_request_count_is_exact_for_n() -> None:
    with run_service() as svc:
        before = _metric(svc.url, HEAVY_CALLS)
        report = _load(Work(url=f"{svc.url}/?in=100&nap=0&processes=5", n=137, concurrency=7))
        after = _metric(svc.url, HEAVY_CALLS)
    assert report["requests"] == 137
    assert report["status_codes"] == {"200": 137}
    assert after - before == 137


def test_duration_is_respected_for_z() -> None:
    with run_service() as svc:
        work = Work(url=f"{svc.url}/healthz", n=4, concurrency=4, duration=1.5, timeout=5.0)
        report = _load(work)
    # No request starts after the deadline and each ends within its timeout.
    assert work.duration <= report["total_seconds"] < work.duration + work.timeout
    assert report["requests"] > work.n  # -z, not -n, ends the run


def test_concurrency_is_respected() -> None:
    with run_service() as svc:
        peak: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak.append(_metric(svc.url, IN_FLIGHT))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        report = _load(Work(url=f"{svc.url}/?in=100&nap=1&processes=5", n=9, concurrency=3))
        done.set()
        sampler.join()
    assert report["requests"] == 9
    assert max(peak) == 3, f"in flight never reached or exceeded 3: {sorted(set(peak))}"
    # Some worker sends three of the nine, one after another, each a 1 s nap.
    assert report["total_seconds"] >= 2.9


def test_status_distribution_counts_400s() -> None:
    with run_service() as svc:
        report = _load(Work(url=f"{svc.url}/?in=ten&nap=0&processes=5", n=40, concurrency=4))
    assert report["status_codes"] == {"400": 40}
    assert report["errors"] == {}


def test_error_distribution_counts_refused_connections() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    report = _load(Work(url=url, n=12, concurrency=3))
    assert report["requests"] == 12
    assert report["status_codes"] == {}
    assert report["errors"] == {f'GET "{url}": connection refused': 12}


def test_rate_limit_per_worker_is_respected() -> None:
    with run_service() as svc:
        work = Work(url=f"{svc.url}/healthz", concurrency=2, qps=5, duration=2.0)
        report = _load(work)
    # A worker sends at 0, 1/qps, 2/qps, ... before the deadline: never more than this many.
    per_worker = work.qps * work.duration + 1
    # More than one worker's share: the limit is per worker, not shared. At 5/s a request has
    # 200 ms before it delays the next, so even a busy machine sends more than one share.
    assert per_worker < report["requests"] <= work.concurrency * per_worker


def test_ctrl_c_prints_the_report_so_far() -> None:
    with run_service() as svc:
        before = _metric(svc.url, HEAVY_CALLS)
        with faas(
            "load", "-z", "30s", "-c", "2", f"{svc.url}/?in=100&nap=0&processes=5"
        ) as process:
            # Ctrl-C once requests arrive, when faas handles it; a fixed sleep could come before
            # the interpreter has started on a busy machine.
            def arrived() -> bool:
                assert process.poll() is None, process.communicate()
                return _metric(svc.url, HEAVY_CALLS) > before

            until(arrived, timeout=60, what="faas load's first requests", cap=0.1)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Summary:" in out
    assert "Status code distribution:" in out
    total = float(re.search(r"Total:\t([0-9.]+) secs", out).group(1))  # type: ignore[union-attr]
    assert total < 30  # the -z 30s run was cut short


def test_progress_line_on_a_terminal() -> None:
    with run_service() as svc:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "load", "-z", "1s", "-c", "2", f"{svc.url}/healthz"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        out, _ = process.communicate(timeout=15)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
    progress = b"".join(chunks).decode()
    assert re.search(r"\r +[0-9.]+ s  [0-9]+ requests  0 errors  [0-9.]+ req/s", progress), progress
    assert "Summary:" in out


def test_without_a_timeout_a_timed_run_cancels_what_is_in_flight_at_its_end() -> None:
    with run_service() as svc:
        url = f"{svc.url}/?in=3&nap=10&processes=0"
        started = time.perf_counter()
        report = _load(Work(url=url, n=2, concurrency=2, duration=1.0, timeout=0.0))
        elapsed = time.perf_counter() - started
    assert elapsed < 9, "it waited for the 10 s naps"
    assert report["errors"] == {
        f'GET "{url}": cancelled at the end of the run (-t 0: no timeout)': 2
    }


def test_a_second_ctrl_c_cancels_the_requests_in_flight() -> None:
    with run_service() as svc:
        url = f"{svc.url}/?in=3&nap=10&processes=0"
        with faas("load", "-z", "60s", "-c", "2", url) as process:
            wait_in_flight(svc.url, 2, seconds=60)
            process.send_signal(signal.SIGINT)
            assert process.stderr is not None
            # The first is handled (and said) before the second is sent: two signals sent at
            # once could arrive as one.
            assert "Ctrl-C again cancels them" in process.stderr.readline() + (
                process.stderr.readline()
            )
            second = time.perf_counter()
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=60)
            ended = time.perf_counter() - second
    assert process.returncode == 0
    assert ended < 8, "the naps in flight were waited for"
    assert f'[2]\tGET "{url}": interrupted' in out


@contextmanager
def _https_with_an_untrusted_certificate(directory: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate a CA of its own signed."""
    pair = Authority(directory).issue("server", common_name="127.0.0.1", hosts=("127.0.0.1",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_certificate_that_is_not_trusted_is_named_so(tmp_path: Path) -> None:
    with _https_with_an_untrusted_certificate(tmp_path) as url:
        report = _load(Work(url=url, n=2, concurrency=1))
    assert report["errors"] == {
        f'GET "{url}": TLS: certificate verify failed: unable to get local issuer certificate': 2
    }
