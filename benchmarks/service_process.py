"""A `python -m service` process on a free loopback port, for the benchmarks."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from e2e.context import free_port
from e2e.poll import until

ROOT = Path(__file__).resolve().parent.parent


def bench_env(**overrides: str) -> dict[str, str]:
    """The environment for measured processes: bytecode caches on, as in the image."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(HOST="127.0.0.1", LOG_LEVEL="warning")
    env.update(overrides)
    return env


def wait_for_200(port: int, path: str, timeout: float) -> None:
    """Until GET PATH on 127.0.0.1:PORT answers 200, asked every millisecond (the time to it
    is what the benchmarks measure); TimeoutError after TIMEOUT seconds."""

    def ok() -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().status == 200
        finally:
            connection.close()

    until(ok, timeout=timeout, what=f"GET {path} answers 200", retry_on=(OSError,),
          initial=0.001, cap=0.001)  # fmt: skip


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
        wait_for_200(port, "/healthz", 30)
        yield Running(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        process.wait(15)
