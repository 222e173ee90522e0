"""The span tree `faas call --trace` prints, from a Zipkin v2 trace (its API's answer)."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ops.trace import Traceparent, spans_of, tree

ORIGIN = 1_700_000_000_000_000  # microseconds since the epoch


def _span(
    span_id: str,
    parent: str | None,
    service: str,
    name: str,
    *,
    at: int,
    took: int,
    container: str | None = None,
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": "t", "id": span_id, "name": name, "timestamp": ORIGIN + at, "duration": took,
        "localEndpoint": {"serviceName": service, "ipv4": "198.51.100.20"},
    }  # fmt: skip
    if parent:
        span["parentId"] = parent
    if container:
        span["tags"] = {"k8s.container.name": container}
    return span


def test_hops_nest_under_their_parents_with_offsets_and_durations() -> None:
    # Out of order, as stores return them; the first hop's parent is the caller's own span,
    # which is not in the store. Zipkin lowercases names.
    document = [
        _span("c", "b", "myfirstserverlessapp", "get /", at=20_000, took=2_010_000),
        _span("a", "caller", "activator", "kn.activator.proxy", at=0, took=2_050_000),
        _span("b", "a", "myfirstserverlessapp", "kn.queueproxy.proxy", at=10_000,
              took=2_030_000, container="queue-proxy"),
        _span("d", "c", "myfirstserverlessapp", "heavylifting", at=21_000, took=2_005_000),
    ]  # fmt: skip
    assert tree(spans_of(document)) == [
        "   0.000 s    2.050 s  activator                         kn.activator.proxy",
        "   0.010 s    2.030 s  myfirstserverlessapp/queue-proxy  └─ kn.queueproxy.proxy",
        "   0.020 s    2.010 s  myfirstserverlessapp                 └─ get /",
        "   0.021 s    2.005 s  myfirstserverlessapp                    └─ heavylifting",
    ]


def test_a_traceparent_is_sampled_and_new_each_time() -> None:
    first, second = Traceparent.new(), Traceparent.new()
    assert first.header == f"00-{first.trace_id}-{first.span_id}-01"
    assert len(first.trace_id) == 32
    assert len(first.span_id) == 16
    assert first.trace_id != second.trace_id
    assert tree([]) == []


def test_the_traceparent_is_what_opentelemetrys_propagator_reads_back() -> None:
    parent = Traceparent.new()
    context = TraceContextTextMapPropagator().extract({"traceparent": parent.header})
    span = get_current_span(context).get_span_context()
    assert (f"{span.trace_id:032x}", f"{span.span_id:016x}") == (parent.trace_id, parent.span_id)
    assert span.trace_flags.sampled
