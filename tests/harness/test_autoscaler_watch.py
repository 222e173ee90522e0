"""test_scaling's PodAutoscaler watch: what it records, and a broken watch failing the test
that reads it (a thread's own raise would only reach threading.excepthook)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import httpx2 as httpx
import pytest
from lightkube import Client

from tests.e2e.test_scaling import AutoscalerStatus


class _Autoscaler:
    def __init__(self, desired: int, actual: int) -> None:
        self.status = {"desiredScale": desired, "actualScale": actual}

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status}


class _Client:
    """A client whose watch gives EVENTS, then breaks (or ends) as told."""

    def __init__(self, events: list[tuple[int, int]], breaks: bool) -> None:
        self.events, self.breaks = events, breaks

    def watch(self, *_: object, **__: object) -> Iterator[tuple[str, _Autoscaler]]:
        for desired, actual in self.events:
            yield "MODIFIED", _Autoscaler(desired, actual)
        if self.breaks:
            raise httpx.RemoteProtocolError("peer closed connection")


def _watched(events: list[tuple[int, int]], *, breaks: bool) -> AutoscalerStatus:
    watch = AutoscalerStatus(cast(Client, _Client(events, breaks)))
    watch.start()
    watch.join(10)
    return watch


def test_every_status_change_is_recorded_in_order() -> None:
    changes = _watched([(1, 0), (10, 3), (10, 10), (0, 10)], breaks=False).stop()
    assert [(d, a) for _, d, a in changes] == [(1, 0), (10, 3), (10, 10), (0, 10)]
    assert [t for t, _, _ in changes] == sorted(t for t, _, _ in changes)


def test_a_watch_broken_before_stop_fails_whoever_reads_it() -> None:
    watch = _watched([(1, 0)], breaks=True)
    with pytest.raises(AssertionError, match="the PodAutoscaler watch failed"):
        watch.stop()
