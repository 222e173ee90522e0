"""Shared helpers: a real `python -m service` on a free loopback port, a Zipkin-like receiver."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain, repeat
from operator import truediv
from pathlib import Path
from typing import Any

import httpx2 as httpx

from e2e.context import free_port
from e2e.poll import until

ROOT = Path(__file__).resolve().parent.parent


def leibniz_reference(processes: int) -> float:
    """math.fsum of all processes+1 Leibniz terms at once: method C's correctly rounded sum."""
    terms = 2 * processes + 2
    positive = map(truediv, repeat(4.0), range(1, terms, 4))
    negative = map(truediv, repeat(-4.0), range(3, terms, 4))
    return math.fsum(chain(positive, negative))


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
def run_service(
    startup_timeout: float = 15, command: Sequence[str] = ("-m", "service"), **env: str
) -> Iterator[RunningService]:
    """Start `python -m service` (or Python with COMMAND's arguments) on a free port and wait
    until /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *command],
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


def python_named(name: str, code: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """Python running CODE under the name NAME (its argv[0], what /proc and psutil show of it),
    with a PATH where NAME is not found: Python finds its own prefix through argv[0], and a
    program of that name on PATH (dockerd, once docker.io is installed) would mislead it."""
    return subprocess.Popen(
        [name, "-c", code, *args], executable=sys.executable,
        env={**os.environ, "PATH": "/nonexistent"}, text=True, **popen,
    )  # fmt: skip


@contextmanager
def faas(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`faas ARGS` as a user runs it (unbuffered, its output piped), killed and reaped after
    the block if it is still running."""
    with subprocess.Popen(
        [sys.executable, "-m", "ops.cli", *args], cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def wait_ready(running: RunningService, timeout: float) -> None:
    """Until the service answers /healthz with 200; RuntimeError with its stderr if it exits."""

    def healthy() -> bool:
        if running.process.poll() is not None:
            stderr = running.process.stderr.read() if running.process.stderr else ""
            raise RuntimeError(f"service exited early with {running.process.returncode}: {stderr}")
        return httpx.get(f"{running.url}/healthz", timeout=1).status_code == 200

    until(healthy, timeout=timeout, what=f"{running.url}/healthz answers 200",
          retry_on=(httpx.TransportError,), initial=0.01, cap=0.1)  # fmt: skip


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
    until(lambda: gauge in httpx.get(f"{url}/metrics").text, timeout=seconds,
          what=f"{count} requests in flight", initial=0.01, cap=0.1)  # fmt: skip


def refused_within(url: str, seconds: float) -> bool:
    """True once a new connection to ``url`` is refused, within ``seconds``."""

    def refused() -> bool:
        try:
            httpx.get(url, timeout=1)
        except httpx.ConnectError:
            return True
        except (httpx.RemoteProtocolError, httpx.ReadError):
            # Accepted just before the listener closed, then closed unanswered: not yet refused.
            return False
        return False

    try:
        return until(refused, timeout=seconds, what=f"{url} refuses", initial=0.02, cap=0.1)
    except TimeoutError:
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
        """The spans received, once there are COUNT or TIMEOUT has passed."""
        with contextlib.suppress(TimeoutError):
            until(lambda: len(self.spans) >= count, timeout=timeout, what=f"{count} spans")
        return list(self.spans)

    def wait_for_posts(self, count: int, timeout: float = 10) -> int:
        """The POSTs received, once there are COUNT or TIMEOUT has passed."""
        with contextlib.suppress(TimeoutError):
            until(lambda: self.posts >= count, timeout=timeout, what=f"{count} posts")
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
                # Zipkin's trace API (/api/v2/trace/ID) over what was received: 404 if none.
                trace_id = self.path.rsplit("/", 1)[-1]
                spans = [s for s in receiver.spans if s.get("traceId") == trace_id]
                body = json.dumps(spans).encode() if spans else b"Trace not found"
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
