"""The Kubernetes API as faas reaches it: a lightkube client for the current kubeconfig context
whose requests are paced as client-go's reflector paces its watches, and its failures in one
line each."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import httpx2 as httpx
import yaml
from lightkube import AsyncClient, ConfigError
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG, KubeConfig, SingleConfig

from ops.endpoint import OpsError

# What reading a bad kubeconfig raises: lightkube passes on its parser's and its checks' errors
# (a missing key is a KeyError, a list instead of a mapping an AttributeError, ...).
_BAD_KUBECONFIG = (
    ConfigError, yaml.YAMLError, OSError, ValueError, LookupError, TypeError, AttributeError,
    AssertionError,
)  # fmt: skip


class KubeError(OpsError):
    """The API server cannot be used; the message is one line."""


class Pacer:
    """client-go's exponential backoff manager as its reflector sets it up: 800 ms, doubled at
    every request up to 30 s, with as much jitter again (capped at 30 s), back to 800 ms after
    two minutes without one. Every request after the first waits its turn, counted from the
    start of the one before, so no answer of the server (an error, a refusal, a stream that ends
    at once) makes the client send more than about one request a second."""

    def __init__(self, initial: float = 0.8, cap: float = 30.0, reset: float = 120.0) -> None:
        self.initial, self.cap, self.reset = initial, cap, reset
        self._step = 0.0
        self._last: float | None = None  # when the last request was let through
        self._computed = -float("inf")  # when the last backoff was computed
        self.status: int | None = None  # the last HTTP answer's status; None before any
        self.answered = asyncio.Event()  # set at the first HTTP answer, whatever its status

    def backoff(self, now: float) -> float:
        """The wait before a request at NOW, counted from the last request's start."""
        if now - self._computed > self.reset:
            self._step = self.initial
        else:
            self._step = min(self._step * 2, self.cap)
        self._computed = now
        return min(self._step * (1 + random.random()), self.cap)  # noqa: S311 (jitter)

    async def turn(self) -> None:
        """Wait until the next request may go."""
        now = time.monotonic()
        if self._last is not None:
            await asyncio.sleep(max(0.0, self._last + self.backoff(now) - now))
        self._last = time.monotonic()


class _PacedTransport(httpx.AsyncBaseTransport):
    """The client's transport: every request waits for the pacer; an error's body (a Status, a
    few hundred bytes) is read at once, so that it can be quoted after the stream is closed."""

    def __init__(self, inner: httpx.AsyncBaseTransport, pacer: Pacer) -> None:
        self.inner, self.pacer = inner, pacer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.pacer.turn()
        response = await self.inner.handle_async_request(request)
        self.pacer.status = response.status_code
        self.pacer.answered.set()
        if response.status_code >= 400:
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            return httpx.Response(
                response.status_code, headers=response.headers, content=body[:4096],
                request=request,
            )  # fmt: skip
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def client(pacer: Pacer, kubeconfig: str | None = None) -> AsyncClient:
    """A client for the current context of KUBECONFIG (else $KUBECONFIG, else ~/.kube/config),
    or a KubeError naming the file and why it cannot be used."""
    path = kubeconfig or os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG)
    try:
        found = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        config: SingleConfig | None = found.get()
        assert config is not None, "no context"
        assert config.user is not None, "no user"
        verify = verify_cluster(config.cluster, config.user, config.abs_file)
    except _BAD_KUBECONFIG as error:
        raise KubeError(f"cannot read kubeconfig {path}: {_reason(error, path)}") from None
    transport = _PacedTransport(httpx.AsyncHTTPTransport(verify=verify), pacer)
    return AsyncClient(config, transport=transport)


def _reason(error: BaseException, path: str) -> str:
    file = Path(path).expanduser()
    if isinstance(error, ConfigError) and not file.is_file():
        reason = "not a file" if file.exists() else "no such file"
    elif isinstance(error, UnicodeError):
        reason = "not UTF-8 text"
    elif isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        reason = f"not YAML: {error.problem} at line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(error, KeyError):
        reason = f"no {error.args[0]!r} entry"
    elif isinstance(error, AttributeError | TypeError):
        reason = "not a kubeconfig (a mapping with clusters and contexts)"
    else:
        reason = " ".join(str(error).split()) or type(error).__name__
    return reason


def unreachable(api: AsyncClient, error: httpx.TransportError) -> str:
    """One line for a request that got no HTTP answer."""
    why = " ".join(str(error).split()) or type(error).__name__
    cause: BaseException | None = error
    while cause is not None:  # down to the socket's error, whose errno says it in few words
        if isinstance(cause, OSError) and cause.errno:
            why = os.strerror(cause.errno).lower()
            break
        cause = cause.__cause__ or cause.__context__
    return f"cannot reach the API server {api.config.cluster.server}: {why}"


def refusal(
    api: AsyncClient, error: httpx.HTTPStatusError, doing: str, needs: str
) -> tuple[bool, str]:
    """(final, one line) for an HTTP error answered to DOING ("watching pods in namespace X"),
    which NEEDS a permission ("the list and watch verbs on pods in namespace X"). 401 and 403
    are final: retrying cannot give the credentials what they lack."""
    response = error.response
    status = f"{response.status_code} {response.reason_phrase}".strip()
    try:
        message = str(response.json().get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    said = f" ({' '.join(message.split())})" if message else ""
    line = f"the API server {api.config.cluster.server} answered {status} to {doing}{said}"
    context = api.config.context_name
    if response.status_code == 401:
        return True, (
            f"{line}: it does not accept the credentials of kubeconfig context {context} "
            "(an expired token or a certificate it does not trust)"
        )
    if response.status_code == 403:
        return True, (f"{line}: the credentials of kubeconfig context {context} lack {needs}")
    return False, line
