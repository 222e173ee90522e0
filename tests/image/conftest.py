"""Fixtures for the image checks: run by `make image-test`, which builds the image first.

IMAGE names the image under test and BASE_IMAGE the base it was built on; DOCKER is the client.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2 as httpx
import pytest

from e2e.context import free_port
from e2e.poll import until

REPORT: dict[str, str] = {}


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.environ.get("DOCKER", "docker"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise pytest.UsageError(f"{name} is not set: run these checks with `make image-test`")
    return value


@pytest.fixture(scope="session")
def image() -> str:
    return _required("IMAGE")


@pytest.fixture(scope="session")
def base_image() -> str:
    return _required("BASE_IMAGE")


@dataclass
class Container:
    name: str
    url: str
    seconds_to_first_200: float

    def exit_code(self) -> int:
        return int(docker("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout)


def start_container(image: str, name: str, *extra: str) -> Container:
    """`docker run` the image read-only, as its own user, on a free loopback port."""
    port = free_port()
    started = time.perf_counter()
    docker(
        "run", "--detach", "--name", name, "--network", "host", "--read-only",
        "--tmpfs", "/tmp",  # noqa: S108 (a tmpfs mount point in the container)
        "--env", f"PORT={port}", "--env", "HOST=127.0.0.1", *extra, image,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{url}/?in=10000&nap=0&processes=50", timeout=2).status_code
              == 200, timeout=30, what="the container's first 200",
              retry_on=(httpx.TransportError,), initial=0.01, cap=0.05)  # fmt: skip
    except TimeoutError:
        logs = docker("logs", name, check=False)
        docker("rm", "--force", name, check=False)
        raise RuntimeError(
            f"container gave no 200 within 30 s:\n{logs.stdout}{logs.stderr}"
        ) from None
    return Container(name, url, time.perf_counter() - started)


@pytest.fixture(scope="session")
def container(image: str) -> Iterator[Container]:
    name = f"faas-image-test-{os.getpid()}"
    running = start_container(image, name, "--env", "K_REVISION=faas-00001")
    REPORT["docker run to first 200"] = f"{running.seconds_to_first_200 * 1000:.0f} ms"
    try:
        yield running
    finally:
        docker("rm", "--force", name, check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("image report")
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key}: {value}")
