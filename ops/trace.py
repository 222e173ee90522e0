"""`faas call --trace`: one request with a trace of its own, followed into the trace store.

The request carries a sampled W3C ``traceparent`` that faas makes, so every hop that joins the
trace (Knative's activator and queue-proxy over OTLP, the app over Zipkin) records its spans
under that trace id; faas then reads the trace from a Jaeger query API (``/api/traces/ID``)
once its spans stop arriving, and prints them as a tree: the terminal view of what the
original showed in Zipkin's UI.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ops.endpoint import OpsError


class TraceError(OpsError):
    """The trace store cannot be read, or the trace did not arrive; the message is one line."""


@dataclass(frozen=True)
class Traceparent:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits: the caller's own span, the parent of the first hop's

    @classmethod
    def new(cls) -> Traceparent:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"  # version 00, sampled


@dataclass
class Span:
    span_id: str
    parent: str | None
    service: str
    name: str
    start: int  # microseconds since the epoch
    duration: int  # microseconds
    children: list[Span] = field(default_factory=list)


def _service(process: dict[str, Any]) -> str:
    """A process's service name, and its container's where it tells one container of a pod
    from another (queue-proxy reports the Knative Service's name, as the app does)."""
    name = str(process.get("serviceName", "?"))
    tags = {tag.get("key"): tag.get("value") for tag in process.get("tags") or []}
    container = tags.get("k8s.container.name") or tags.get("container.name")
    return f"{name}/{container}" if container else name


def spans_of(document: dict[str, Any]) -> list[Span]:
    """The spans of a Jaeger query API answer (``{"data": [trace]}``)."""
    spans = []
    for trace in document.get("data") or []:
        processes = trace.get("processes") or {}
        for raw in trace.get("spans") or []:
            parents = [r["spanID"] for r in raw.get("references") or []
                       if r.get("refType") == "CHILD_OF"]  # fmt: skip
            service = _service(processes.get(raw.get("processID")) or {})
            spans.append(Span(raw["spanID"], parents[0] if parents else None, service,
                              raw["operationName"], int(raw["startTime"]),
                              int(raw["duration"])))  # fmt: skip
    return spans


def tree(spans: list[Span]) -> list[str]:
    """One line a span, children under their parent by start time: start offset from the
    trace's first span, duration, service and span name, indented by depth."""
    if not spans:
        return []
    by_id = {span.span_id: span for span in spans}
    roots = []
    for span in sorted(spans, key=lambda s: s.start):
        span.children = []
    for span in sorted(spans, key=lambda s: s.start):
        parent = by_id.get(span.parent or "")
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)
    origin = min(span.start for span in spans)
    width = max(len(span.service) for span in spans)
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        offset, duration = (span.start - origin) / 1e6, span.duration / 1e6
        indent = "   " * (depth - 1) + "└─ " if depth else ""
        lines.append(f"{offset:8.3f} s {duration:8.3f} s  {span.service:<{width}}  "
                     f"{indent}{span.name}")  # fmt: skip
        for child in span.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return lines


async def wait_for_trace(
    store: str, trace_id: str, *, timeout: float = 30.0, settle: float = 3.0
) -> list[Span]:
    """The trace's spans once none has arrived for SETTLE seconds (exporters send in batches,
    every few seconds), within TIMEOUT (0: no limit); TraceError if the store cannot be read,
    or the trace has no span by then."""
    url = f"{store.rstrip('/')}/api/traces/{trace_id}"
    deadline = time.monotonic() + timeout if timeout else float("inf")
    seen: list[Span] = []
    changed = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    document = await response.json(content_type=None)
                    if response.status not in (200, 404):
                        raise TraceError(f"trace store {store}: HTTP {response.status}")
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                raise TraceError(f"cannot reach the trace store {store}: {error}") from None
            spans = spans_of(document) if response.status == 200 else []
            now = time.monotonic()
            if len(spans) != len(seen):
                seen, changed = spans, now
            if seen and now - changed >= settle:
                return seen
            if now > deadline:
                if seen:
                    return seen
                raise TraceError(f"trace {trace_id}: no span in {store} within {timeout:g} s")
            await asyncio.sleep(0.5)
