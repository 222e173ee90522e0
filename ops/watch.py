"""The replica timeline of a Knative Service, from its pods through the Kubernetes API."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    ready: int
    total: int


@dataclass
class Timeline:
    """Ready and total pods over time, one sample per change."""

    samples: list[Sample] = field(default_factory=list)

    def add(self, t: float, pods: dict[str, bool]) -> Sample | None:
        sample = Sample(t, sum(pods.values()), len(pods))
        last = self.samples[-1] if self.samples else None
        if last is not None and (last.ready, last.total) == (sample.ready, sample.total):
            return None
        self.samples.append(sample)
        return sample

    def summary(self) -> dict[str, Any]:
        """Time to the first ready pod, peak replicas, and when they were back to zero."""
        first_ready = next((s.t for s in self.samples if s.ready > 0), None)
        peak_ready = max((s.ready for s in self.samples), default=0)
        peak_total = max((s.total for s in self.samples), default=0)
        # When the pods were last all gone after there had been some; None while any are left.
        back_to_zero = None
        seen = False
        for sample in self.samples:
            if sample.total > 0:
                seen, back_to_zero = True, None
            elif seen and back_to_zero is None:
                back_to_zero = sample.t
        return {
            "first_ready_seconds": first_ready,
            "peak_ready": peak_ready,
            "peak_pods": peak_total,
            "back_to_zero_seconds": back_to_zero,
        }


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


def is_ready(pod: Pod) -> bool:
    if pod.metadata is not None and pod.metadata.deletionTimestamp is not None:
        return False
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


async def watch_pods(
    service: str,
    namespace: str | None,
    timeline: Timeline,
    stop: asyncio.Event,
    *,
    started: float | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    client: AsyncClient | None = None,
) -> Timeline:
    """Follow the service's pods until ``stop`` is set, adding a sample at every change.

    Without ``client``, one for the current kubeconfig context (WatchError if it is unreadable).
    """
    client = client or kube_client()
    started = time.perf_counter() if started is None else started
    pods: dict[str, bool] = {}

    async def follow() -> None:
        async for event, pod in client.watch(
            Pod, namespace=namespace, labels={SERVICE_LABEL: service}, on_error=on_error_retry
        ):
            name = pod.metadata.name if pod.metadata and pod.metadata.name else ""
            if event == "DELETED":
                pods.pop(name, None)
            else:
                pods[name] = is_ready(pod)
            sample = timeline.add(time.perf_counter() - started, pods)
            if sample is not None and on_sample is not None:
                on_sample(sample)

    timeline.add(0.0, pods)
    task = asyncio.create_task(follow())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        stopped.cancel()
        await asyncio.gather(task, stopped, return_exceptions=True)
        await client.close()
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return timeline
