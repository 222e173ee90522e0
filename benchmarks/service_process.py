"""A `python -m service` process on a free loopback port, for the benchmarks."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_env(**overrides: str) -> dict[str, str]:
    """The environment for measured processes: bytecode caches on, as in the image."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(HOST="127.0.0.1", LOG_LEVEL="warning")
    env.update(overrides)
    return env


def wait_for_200(port: int, path: str, deadline: float) -> bool:
    while time.perf_counter() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return True
        except OSError:
            time.sleep(0.001)
        finally:
            connection.close()
    return False


@dataclass(frozen=True)
class Running:
    url: str
    pid: int


@contextmanager
def running_service(command: list[str] | None = None) -> Iterator[Running]:
    """Run the service (or ``command``) until the block ends."""
    port = free_port()
    process = subprocess.Popen(
        command or [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=bench_env(PORT=str(port)),
        stdout=subprocess.DEVNULL,
    )
    try:
        if not wait_for_200(port, "/healthz", time.perf_counter() + 30):
            raise RuntimeError("the service did not start")
        yield Running(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        process.wait(15)
