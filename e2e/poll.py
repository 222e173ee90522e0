"""Waiting for a state, one way for the harness, the tests and the benchmarks: ask again with
exponential backoff and jitter (tenacity) until the answer is truthy or the time is up, and
then say what was awaited, with the last error as the cause."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_exponential_jitter,
)

T = TypeVar("T")
Errors = tuple[type[BaseException], ...]


def _falsy(answer: object) -> bool:
    return not answer


def _policy(timeout: float, retry_on: Errors, initial: float, cap: float) -> dict[str, Any]:
    return {
        "stop": stop_after_delay(timeout),
        "wait": wait_exponential_jitter(multiplier=initial, max=cap, jitter=initial),
        "retry": retry_if_exception_type(retry_on) | retry_if_result(_falsy),
    }


def _timed_out(error: RetryError, timeout: float, what: str) -> tuple[TimeoutError, Any]:
    """The TimeoutError to raise, and the last attempt's error (None if it answered falsy)."""
    cause = error.last_attempt.exception()
    told = f" (last: {' '.join(str(cause).split()) or type(cause).__name__})" if cause else ""
    return TimeoutError(f"not within {timeout:g} s: {what}{told}"), cause


def until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    retry_on: Errors = (),
    initial: float = 0.02,
    cap: float = 1.0,
) -> T:
    """CHECK's first truthy answer. It is asked again after INITIAL seconds, twice as long
    each time up to CAP, each with as much jitter again, until TIMEOUT; an exception of
    RETRY_ON counts as no answer, any other one ends the wait. TimeoutError names WHAT."""
    try:
        return Retrying(**_policy(timeout, retry_on, initial, cap))(check)
    except RetryError as error:
        timed_out, cause = _timed_out(error, timeout, what)
    raise timed_out from cause


async def until_async(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float,
    what: str,
    retry_on: Errors = (),
    initial: float = 0.02,
    cap: float = 1.0,
) -> T:
    """`until` for a coroutine function, waiting without blocking the event loop."""
    try:
        return await AsyncRetrying(**_policy(timeout, retry_on, initial, cap))(check)
    except RetryError as error:
        timed_out, cause = _timed_out(error, timeout, what)
    raise timed_out from cause
