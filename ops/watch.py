"""The replica timeline of a Knative Service: its pods through the Kubernetes API (ready, live,
terminating), and Knative's desired and requested pods from a metrics store's Prometheus API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod

from ops import kubeapi
from ops.endpoint import OpsError

SERVICE_LABEL = "serving.knative.dev/service"
# Failed watches in a row (each after its backoff, about 25 s in all) before the watch gives up.
WATCH_TRIES = 6


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
    notes: list[tuple[float, str]] = field(default_factory=list)  # (t, what went wrong)

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


@dataclass
class _Recorder:
    """Where the followers put what they see: samples of the timeline, and notes."""

    timeline: Timeline
    started: float
    on_sample: Callable[[Sample], None] | None
    on_note: Callable[[str], None] | None

    def now(self) -> float:
        return time.perf_counter() - self.started

    def record(self) -> None:
        sample = self.timeline.record(self.now())
        if sample is not None and self.on_sample is not None:
            self.on_sample(sample)

    def note(self, text: str) -> None:
        self.timeline.notes.append((self.now(), text))
        if self.on_note is not None:
            self.on_note(text)

    def scaled(self, scale: tuple[int | None, int | None]) -> None:
        self.timeline.scale = scale
        self.record()


async def _follow_scale(
    base: str, service: str, namespace: str, recorder: _Recorder, *, interval: float = 1.0
) -> None:
    """Poll Knative's desired and requested pods of the service every INTERVAL seconds. The
    first poll must answer (else WatchError); when a later one fails, the values are unknown
    (None) until the store answers again, and a note says why, once an outage."""
    queries = [
        _revision_query(metric, service, namespace)
        for metric in ("kn_revision_pods_desired", "kn_revision_pods_requested")
    ]
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        first, answering = True, True
        while True:
            try:
                values = [await _query(session, base, q) for q in queries]
                recorder.scaled((values[0], values[1]))
                answering = True
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, WatchError) as error:
                why = error if isinstance(error, WatchError) else f"{base}: {error or 'timeout'}"
                if first:
                    raise WatchError(f"cannot read the metrics store {why}") from None
                if answering:
                    recorder.scaled((None, None))
                    recorder.note(f"the metrics store stopped answering ({why}): desired and "
                                  "requested unknown until it answers again")  # fmt: skip
                answering = False
            first = False
            await asyncio.sleep(interval)


async def _follow_pods(
    client: AsyncClient, pacer: kubeapi.Pacer, service: str, namespace: str, recorder: _Recorder
) -> None:
    """Watch the service's pods, again after each failure (paced by PACER), until a failure is
    final: WatchError."""
    failures = 0
    server = client.config.cluster.server
    doing = f"watching pods in namespace {namespace}"
    needs = f"the list and watch verbs on pods in namespace {namespace}"
    pods = recorder.timeline.pods
    while True:
        fresh = True  # a new watch lists every pod again: forget the old ones
        try:
            async for event, pod in client.watch(
                Pod, namespace=namespace, labels={SERVICE_LABEL: service}
            ):
                if fresh:
                    pods.clear()
                    fresh, failures = False, 0
                name = pod.metadata.name if pod.metadata and pod.metadata.name else ""
                if event == "DELETED":
                    pods.pop(name, None)
                else:
                    pods[name] = pod_state(pod)
                recorder.record()
            problem = f"the API server {server} ended the watch"
        except httpx.HTTPStatusError as error:
            final, problem = kubeapi.refusal(client, error, doing, needs)
            if final:
                raise WatchError(problem) from None
        except httpx.TransportError as error:
            problem = kubeapi.unreachable(client, error)
            if pacer.status is None:
                raise WatchError(problem) from None
        except ValueError as error:  # a line that is not a watch event
            problem = f"the API server {server} sent no watch event: "
            problem += " ".join(str(error).split())[:200]
        failures += 1
        if failures >= WATCH_TRIES:
            raise WatchError(f"{problem}; gave up after {failures} tries")
        recorder.note(f"{problem}; trying again")


async def _first_answer(
    pacer: kubeapi.Pacer, tasks: set[asyncio.Task[None]], timeout: float = 10.0
) -> None:
    """Stopped before the API server answered the watch (a load shorter than its first
    request): wait, at most TIMEOUT, for that answer, and for the watch to end if it is a
    refusal of the credentials, so that a refusal is told and not hidden behind no pods."""
    answered = asyncio.create_task(pacer.answered.wait())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.wait({*tasks, answered}, return_when=asyncio.FIRST_COMPLETED)
                if pacer.status in (401, 403):
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        answered.cancel()


async def watch_pods(
    service: str,
    namespace: str | None,
    timeline: Timeline,
    stop: asyncio.Event,
    *,
    started: float | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    metrics: str | None = None,
    pacer: kubeapi.Pacer | None = None,
) -> Timeline:
    """Follow the service's pods until ``stop`` is set, adding a sample at every change; with
    ``metrics`` (a Prometheus API's base URL), Knative's desired and requested pods too.

    The pods come from the current kubeconfig context. Every watch request waits its turn
    (``pacer``, client-go's backoff by default). WatchError, one line, when the kubeconfig
    cannot be read, the API server cannot be reached at first, refuses the credentials (401,
    403), or fails WATCH_TRIES times in a row; ON_NOTE hears what went wrong on the way.
    """
    pacer = pacer or kubeapi.Pacer()
    try:
        client = kubeapi.client(pacer)
    except kubeapi.KubeError as error:
        raise WatchError(str(error)) from None
    started = time.perf_counter() if started is None else started
    recorder = _Recorder(timeline, started, on_sample, on_note)
    scope = namespace or client.namespace
    timeline.record(0.0)
    tasks = {asyncio.create_task(_follow_pods(client, pacer, service, scope, recorder))}
    if metrics:
        tasks.add(asyncio.create_task(_follow_scale(metrics.rstrip("/"), service, scope, recorder)))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({*tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stopped.done():
            await _first_answer(pacer, tasks)
    finally:
        for task in (*tasks, stopped):
            task.cancel()
        await asyncio.gather(*tasks, stopped, return_exceptions=True)
        await client.close()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return timeline
