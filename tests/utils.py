"""Shared helpers: a real `python -m service` on a free loopback port, a Zipkin-like receiver."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain, repeat
from operator import truediv
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent


def leibniz_reference(processes: int) -> float:
    """math.fsum of all processes+1 Leibniz terms at once: method C's correctly rounded sum."""
    terms = 2 * processes + 2
    positive = map(truediv, repeat(4.0), range(1, terms, 4))
    negative = map(truediv, repeat(-4.0), range(3, terms, 4))
    return math.fsum(chain(positive, negative))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningService:
    process: subprocess.Popen[str]
    url: str
    terminated: bool = False

    def terminate(self) -> None:
        """SIGTERM, once, as the kubelet sends it. A second one could land while the interpreter
        finalizes (Python has restored the default handlers then) and kill the process."""
        if not self.terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self, timeout: float = 15) -> tuple[int, str]:
        """SIGTERM (unless sent already), wait, and return the exit code and what it wrote to
        stderr."""
        self.terminate()
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return self.process.returncode, stderr


def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K_"))}
    env.update({"HOST": "127.0.0.1", "LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


@contextmanager
def run_service(startup_timeout: float = 15, **env: str) -> Iterator[RunningService]:
    """Start `python -m service` on a free port and wait until /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=service_env(PORT=str(port), **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = RunningService(process, f"http://127.0.0.1:{port}")
    try:
        wait_ready(running, startup_timeout)
        yield running
    finally:
        running.stop()


def wait_ready(running: RunningService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"service exited early: {running.process.stderr!r}")
        try:
            if httpx.get(f"{running.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.02)
    raise RuntimeError("service did not become healthy in time")


def health_during(url: str, request: str) -> tuple[int, list[float]]:
    """GET ``request`` in a thread; meanwhile probe /healthz, /readyz and /metrics in turn.
    The request's status, and how long each probe took."""
    done = threading.Event()
    status: list[int] = []

    def heavy() -> None:
        with httpx.Client(base_url=url, timeout=60) as own:
            status.append(own.get(request).status_code)
        done.set()

    worker = threading.Thread(target=heavy)
    worker.start()
    latencies = []
    with httpx.Client(base_url=url, timeout=10) as client:
        while not done.is_set():
            for path in ("/healthz", "/readyz", "/metrics"):
                started = time.perf_counter()
                assert client.get(path).status_code == 200
                latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
    worker.join()
    return status[0], latencies


def wait_in_flight(url: str, count: int, seconds: float = 20) -> None:
    """Until the service at ``url`` reports ``count`` requests in flight."""
    gauge = f"myfirstserverlessapp_requests_in_flight {count}.0"
    deadline = time.monotonic() + seconds
    while gauge not in httpx.get(f"{url}/metrics").text:
        assert time.monotonic() < deadline, f"{count} requests never were in flight"
        time.sleep(0.02)


def refused_within(url: str, seconds: float) -> bool:
    """True once a new connection to ``url`` is refused, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
        except httpx.ConnectError:
            return True
        time.sleep(0.05)
    return False


@dataclass
class ZipkinReceiver:
    """A Zipkin v2 collector stand-in on 127.0.0.1: keeps every span POSTed to /api/v2/spans.

    ``mode`` 'ok' answers 202, 'fail' answers 500, 'hang' holds each request for ``hang`` seconds.
    """

    mode: str = "ok"
    hang: float = 30.0
    spans: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    _server: ThreadingHTTPServer | None = None
    _released: threading.Event = field(default_factory=threading.Event)

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/v2/spans"

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.spans)

    def wait_for_posts(self, count: int, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while self.posts < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.posts

    @contextmanager
    def running(self) -> Iterator[ZipkinReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.posts += 1
                if receiver.mode == "hang":
                    receiver._released.wait(receiver.hang)
                if receiver.mode == "fail":
                    self.send_response(500)
                else:
                    receiver.spans.extend(json.loads(body))
                    self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                # Jaeger's query API (/api/traces/ID) over what was received, as faas reads it.
                trace_id = self.path.rsplit("/", 1)[-1]
                spans = [s for s in receiver.spans if s.get("traceId") == trace_id]
                body = json.dumps(_jaeger_trace(trace_id, spans)).encode()
                self.send_response(200 if spans else 404)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._released.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


def _jaeger_trace(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Zipkin v2 spans as Jaeger's query API answers for one trace."""
    services = sorted({s.get("localEndpoint", {}).get("serviceName", "?") for s in spans})
    process = {name: f"p{i}" for i, name in enumerate(services, start=1)}
    return {
        "data": [
            {
                "traceID": trace_id,
                "spans": [
                    {
                        "spanID": s["id"],
                        "operationName": s["name"],
                        "references": [{"refType": "CHILD_OF", "spanID": s["parentId"]}]
                        if s.get("parentId")
                        else [],
                        "startTime": s["timestamp"],
                        "duration": s.get("duration", 0),
                        "processID": process[s.get("localEndpoint", {}).get("serviceName", "?")],
                    }
                    for s in spans
                ],
                "processes": {pid: {"serviceName": name} for name, pid in process.items()},
            }
        ]
        if spans
        else []
    }
