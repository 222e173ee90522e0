"""The span tree `faas call --trace` prints, from a Jaeger query API answer."""

from __future__ import annotations

from typing import Any

from ops.trace import Traceparent, spans_of, tree

ORIGIN = 1_700_000_000_000_000  # microseconds since the epoch


def _span(
    span_id: str, parent: str | None, process: str, name: str, *, at: int, took: int
) -> dict[str, Any]:
    references = [{"refType": "CHILD_OF", "traceID": "t", "spanID": parent}] if parent else []
    return {"spanID": span_id, "operationName": name, "references": references,
            "startTime": ORIGIN + at, "duration": took, "processID": process}  # fmt: skip


def test_hops_nest_under_their_parents_with_offsets_and_durations() -> None:
    document = {
        "data": [
            {
                "traceID": "t",
                # Out of order, as stores return them; the first hop's parent is the caller's
                # own span, which is not in the store.
                "spans": [
                    _span("c", "b", "p3", "GET /", at=20_000, took=2_010_000),
                    _span("a", "caller", "p1", "kn.activator.proxy", at=0, took=2_050_000),
                    _span("b", "a", "p2", "kn.queueproxy.proxy", at=10_000, took=2_030_000),
                    _span("d", "c", "p3", "heavyLifting", at=21_000, took=2_005_000),
                ],
                "processes": {
                    "p1": {"serviceName": "activator"},
                    "p2": {
                        "serviceName": "myfirstserverlessapp",
                        "tags": [
                            {"key": "k8s.container.name", "type": "string", "value": "queue-proxy"}
                        ],
                    },
                    "p3": {"serviceName": "myfirstserverlessapp"},
                },
            }
        ]
    }
    assert tree(spans_of(document)) == [
        "   0.000 s    2.050 s  activator                         kn.activator.proxy",
        "   0.010 s    2.030 s  myfirstserverlessapp/queue-proxy  └─ kn.queueproxy.proxy",
        "   0.020 s    2.010 s  myfirstserverlessapp                 └─ GET /",
        "   0.021 s    2.005 s  myfirstserverlessapp                    └─ heavyLifting",
    ]


def test_a_traceparent_is_sampled_and_new_each_time() -> None:
    first, second = Traceparent.new(), Traceparent.new()
    assert first.header == f"00-{first.trace_id}-{first.span_id}-01"
    assert len(first.trace_id) == 32
    assert len(first.span_id) == 16
    assert first.trace_id != second.trace_id
    assert tree([]) == []
