"""`faas call --trace`: one request with a trace of its own, followed into the trace store.

The request carries a sampled W3C ``traceparent`` that faas makes, so every hop that joins the
trace (Knative's activator and queue-proxy over OTLP through the collector, the app over
Zipkin) records its spans under that trace id; faas then reads the trace from Zipkin's API
(``/api/v2/trace/ID``) once its spans stop arriving, and prints them as a tree: the terminal
view of what Zipkin's UI shows.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ops.endpoint import OpsError


class TraceError(OpsError):
    """The trace store cannot be read, or the trace did not arrive; the message is one line."""


@dataclass(frozen=True)
class Traceparent:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits: the caller's own span, the parent of the first hop's

    @classmethod
    def new(cls) -> Traceparent:
        ids = RandomIdGenerator()
        return cls(f"{ids.generate_trace_id():032x}", f"{ids.generate_span_id():016x}")

    @property
    def header(self) -> str:
        """The W3C traceparent of a sampled span with these ids, as OpenTelemetry writes it."""
        context = SpanContext(
            int(self.trace_id, 16), int(self.span_id, 16), is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )  # fmt: skip
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(
            carrier, context=set_span_in_context(NonRecordingSpan(context))
        )
        return carrier["traceparent"]


@dataclass
class Span:
    span_id: str
    parent: str | None
    service: str
    name: str
    start: int  # microseconds since the epoch
    duration: int  # microseconds
    children: list[Span] = field(default_factory=list)


def _service(raw: dict[str, Any]) -> str:
    """A span's service, and its container's where it tells one container of a pod from
    another (queue-proxy reports the Knative Service's name, as the app does)."""
    name = str((raw.get("localEndpoint") or {}).get("serviceName") or "?")
    tags = raw.get("tags") or {}
    container = tags.get("k8s.container.name") or tags.get("container.name")
    return f"{name}/{container}" if container else name


def spans_of(document: list[dict[str, Any]]) -> list[Span]:
    """The spans of a Zipkin v2 trace (``/api/v2/trace/ID``: a list of spans)."""
    return [
        Span(raw["id"], raw.get("parentId"), _service(raw), str(raw.get("name") or ""),
             int(raw.get("timestamp") or 0), int(raw.get("duration") or 0))
        for raw in document
    ]  # fmt: skip


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
    url = f"{store.rstrip('/')}/api/v2/trace/{trace_id}"
    deadline = time.monotonic() + timeout if timeout else float("inf")
    seen: list[Span] = []
    changed = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status not in (200, 404):  # 404: no span of it yet
                        raise TraceError(f"trace store {store}: HTTP {response.status}")
                    found = await response.json(content_type=None) if response.status == 200 else []
            except (aiohttp.ClientError, TimeoutError) as error:
                raise TraceError(f"cannot reach the trace store {store}: {error}") from None
            except ValueError:
                raise TraceError(f"trace store {store}: {url} answered no JSON") from None
            if not isinstance(found, list):
                raise TraceError(f"trace store {store}: {url} answered no list of spans")
            spans = spans_of(found)
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
