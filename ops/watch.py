"""The replica timeline of a Knative Service: its pods through the Kubernetes API (ready, live,
terminating), and Knative's desired and requested pods from a metrics store's Prometheus API."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from lightkube import AsyncClient, ConfigError
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG
from lightkube.resources.core_v1 import Pod
from lightkube.types import on_error_retry

from ops.endpoint import OpsError

SERVICE_LABEL = "serving.knative.dev/service"

# What reading a bad kubeconfig raises: lightkube passes on its parser's and its checks' errors
# (a missing key is a KeyError, a list instead of a mapping an AttributeError, ...).
_BAD_KUBECONFIG = (
    ConfigError, yaml.YAMLError, OSError, ValueError, LookupError, TypeError, AttributeError,
    AssertionError,
)  # fmt: skip


class WatchError(OpsError):
    """The replicas cannot be watched; the message is one line."""


@dataclass(frozen=True)
class Sample:
    t: float  # seconds from the start of the watch
    ready: int  # live pods that are Ready
    pods: int  # live pods: created and not being deleted
    terminating: int  # pods being deleted (draining), counted apart
    desired: int | None = None  # Knative's autoscaler: pods it wants (from the metrics store)
    requested: int | None = None  # ... and pods it asked Kubernetes for

    @property
    def counts(self) -> tuple[int, int, int, int | None, int | None]:
        return self.ready, self.pods, self.terminating, self.desired, self.requested


READY, NOT_READY, TERMINATING = "ready", "not ready", "terminating"


def pod_state(pod: Pod) -> str:
    if pod.metadata is not None and pod.metadata.deletionTimestamp is not None:
        return TERMINATING
    conditions = (pod.status.conditions if pod.status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return READY if ready else NOT_READY


@dataclass
class Timeline:
    """The service's pods (and Knative's scale, when read) over time, one sample per change."""

    samples: list[Sample] = field(default_factory=list)
    pods: dict[str, str] = field(default_factory=dict)  # name -> READY, NOT_READY, TERMINATING
    scale: tuple[int | None, int | None] = (None, None)  # Knative's desired and requested

    def record(self, t: float) -> Sample | None:
        """A sample of the current state at ``t``, if anything changed since the last."""
        states = list(self.pods.values())
        sample = Sample(
            t,
            ready=states.count(READY),
            pods=states.count(READY) + states.count(NOT_READY),
            terminating=states.count(TERMINATING),
            desired=self.scale[0],
            requested=self.scale[1],
        )
        if self.samples and self.samples[-1].counts == sample.counts:
            return None
        self.samples.append(sample)
        return sample

    def summary(self) -> dict[str, Any]:
        """Time to the first ready pod, the peaks, and when the service was back to zero: no
        live pod, and then no pod at all (the last terminating one gone)."""
        first_ready = next((s.t for s in self.samples if s.ready > 0), None)
        desired = [s.desired for s in self.samples if s.desired is not None]
        requested = [s.requested for s in self.samples if s.requested is not None]
        return {
            "first_ready_seconds": first_ready,
            "peak_ready": max((s.ready for s in self.samples), default=0),
            "peak_pods": max((s.pods for s in self.samples), default=0),
            "peak_terminating": max((s.terminating for s in self.samples), default=0),
            "peak_desired": max(desired) if desired else None,
            "peak_requested": max(requested) if requested else None,
            "back_to_zero_seconds": _last_reached(self.samples, lambda s: s.pods),
            "all_gone_seconds": _last_reached(self.samples, lambda s: s.pods + s.terminating),
        }


def _last_reached(samples: list[Sample], count: Callable[[Sample], int]) -> float | None:
    """When ``count`` last fell to zero after being above it; None while it is above zero."""
    reached, seen = None, False
    for sample in samples:
        if count(sample) > 0:
            seen, reached = True, None
        elif seen and reached is None:
            reached = sample.t
    return reached


def kube_client() -> AsyncClient:
    """A client for the current kubeconfig context, or a WatchError naming the file and why."""
    path = os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG)
    try:
        return AsyncClient()
    except _BAD_KUBECONFIG as error:
        raise WatchError(f"cannot read kubeconfig {path}: {_reason(error, path)}") from None


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


def _revision_query(metric: str, service: str, namespace: str) -> str:
    return f'sum({metric}{{k8s_namespace_name="{namespace}", kn_service_name="{service}"}})'


async def _query(session: aiohttp.ClientSession, base: str, query: str) -> int | None:
    """An instant query of the Prometheus API: its single value, or None when no series."""
    async with session.get(f"{base}/api/v1/query", params={"query": query}) as response:
        body = await response.json(content_type=None)
        if response.status != 200 or body.get("status") != "success":
            raise WatchError(f"metrics store {base}: {body.get('error') or response.status}")
    result = body["data"]["result"]
    return round(float(result[0]["value"][1])) if result else None


async def _follow_scale(
    base: str,
    service: str,
    namespace: str,
    changed: Callable[[tuple[int | None, int | None]], None],
    interval: float = 1.0,
) -> None:
    """Poll Knative's desired and requested pods of the service every INTERVAL seconds. The
    first poll must answer (else WatchError); later failures keep the last values."""
    queries = [
        _revision_query(metric, service, namespace)
        for metric in ("kn_revision_pods_desired", "kn_revision_pods_requested")
    ]
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        first = True
        while True:
            try:
                values = [await _query(session, base, q) for q in queries]
                changed((values[0], values[1]))
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, WatchError) as error:
                if first:
                    why = error if isinstance(error, WatchError) else f"{base}: {error}"
                    raise WatchError(f"cannot read the metrics store {why}") from None
            first = False
            await asyncio.sleep(interval)


async def watch_pods(
    service: str,
    namespace: str | None,
    timeline: Timeline,
    stop: asyncio.Event,
    *,
    started: float | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    client: AsyncClient | None = None,
    metrics: str | None = None,
) -> Timeline:
    """Follow the service's pods until ``stop`` is set, adding a sample at every change; with
    ``metrics`` (a Prometheus API's base URL), Knative's desired and requested pods too.

    Without ``client``, one for the current kubeconfig context (WatchError if it is unreadable).
    """
    client = client or kube_client()
    started = time.perf_counter() if started is None else started

    def record() -> None:
        sample = timeline.record(time.perf_counter() - started)
        if sample is not None and on_sample is not None:
            on_sample(sample)

    async def follow() -> None:
        async for event, pod in client.watch(
            Pod, namespace=namespace, labels={SERVICE_LABEL: service}, on_error=on_error_retry
        ):
            name = pod.metadata.name if pod.metadata and pod.metadata.name else ""
            if event == "DELETED":
                timeline.pods.pop(name, None)
            else:
                timeline.pods[name] = pod_state(pod)
            record()

    def scaled(scale: tuple[int | None, int | None]) -> None:
        timeline.scale = scale
        record()

    timeline.record(0.0)
    tasks = {asyncio.create_task(follow())}
    if metrics:
        scope = namespace or client.namespace
        tasks.add(asyncio.create_task(_follow_scale(metrics.rstrip("/"), service, scope, scaled)))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({*tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*tasks, stopped):
            task.cancel()
        await asyncio.gather(*tasks, stopped, return_exceptions=True)
        await client.close()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return timeline
