"""e2e/poll.py: the one way of waiting for a state."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from e2e.poll import until, until_async


def test_the_first_truthy_answer_is_returned_and_the_waits_grow() -> None:
    asked: list[float] = []

    def check() -> str | None:
        asked.append(time.monotonic())
        return "ready" if len(asked) == 5 else None

    assert until(check, timeout=30, what="ready", initial=0.02, cap=1.0) == "ready"
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert all(gap >= 0.02 for gap in gaps), gaps
    assert gaps[-1] >= 0.16  # 0.02 doubled three times: backoff, not a fixed interval


def test_time_up_names_what_was_awaited_and_chains_the_last_error() -> None:
    def check() -> bool:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(TimeoutError) as caught:
        until(check, timeout=0.3, what="the registry answers", retry_on=(OSError,))
    assert str(caught.value) == (
        "not within 0.3 s: the registry answers (last: [Errno 111] Connection refused)"
    )
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_a_falsy_answer_until_the_end_says_so_without_a_cause() -> None:
    with pytest.raises(TimeoutError, match=r"^not within 0.2 s: never$") as caught:
        until(lambda: False, timeout=0.2, what="never")
    assert caught.value.__cause__ is None


def test_an_error_not_retried_ends_the_wait_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(KeyError):
        until(lambda: dict[str, str]()["x"], timeout=30, what="x", retry_on=(OSError,))
    assert time.monotonic() - started < 5


def test_the_async_form_waits_without_blocking_the_loop() -> None:
    async def main() -> tuple[str | None, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()

        async def check() -> str | None:
            return "done" if time.monotonic() - started > 0.3 else None

        answer = await until_async(check, timeout=30, what="done", initial=0.05, cap=0.1)
        ticking.cancel()
        return answer, ticks

    answer, ticks = asyncio.run(main())
    assert answer == "done"
    assert ticks >= 5
