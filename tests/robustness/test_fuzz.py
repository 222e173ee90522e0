"""Arbitrary query strings, as raw bytes straight into the ASGI app: never a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from starlette.datastructures import QueryParams

from service.app import create_app
from service.params import Limits, ParameterError, parse_query
from service.settings import DEFAULT_MAX_IN, DEFAULT_MAX_PROCESSES, Settings

APP = create_app(Settings.from_env({}), TracerProvider())
PARAMETERS = {"in", "nap", "processes", "format"}
LIMITS = Limits(max_in=DEFAULT_MAX_IN, max_processes=DEFAULT_MAX_PROCESSES)


def _would_be_slow(query: bytes) -> bool:
    try:
        query.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        parsed = parse_query(QueryParams(query).multi_items(), LIMITS)
    except ParameterError:
        return False
    # A valid query that naps or sums more than 100,000 terms would really take that time.
    return parsed is not None and (parsed.nap > 0 or parsed.processes > 100_000)


async def _get(query: bytes) -> tuple[int, bytes]:
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/", "raw_path": b"/", "query_string": query, "root_path": "",
        "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1), "server": ("test", 80),
    }  # fmt: skip
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


# Realistic lengths: values of thousands of digits (Python's int() refuses more than 4300).
_PIECES = [b"in=", b"nap=", b"processes=", b"format=", b"&", b"=", b"%", b"%ff", b"%00", b"+",
           b"-", b"9" * 30, b"10", b"\xff\xfe", b";", b"#", b"%20", b"%C2%A0", b"0" * 4300,
           b"9" * 5000, b"-" + b"9" * 4400, b"7"]  # fmt: skip
_pieces = st.sampled_from(_PIECES)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=6000),
        st.lists(st.one_of(_pieces, st.binary(max_size=8)), max_size=14).map(b"".join),
    )
)
def test_raw_query_bytes_never_cause_a_server_error(query: bytes) -> None:
    assume(not _would_be_slow(query))
    status, body = asyncio.run(_get(query))
    assert status in (200, 400), (query, status, body)
    if status == 400:
        assert body.split(b":")[0].decode() in PARAMETERS, body


def test_a_value_of_more_than_4300_digits_is_answered() -> None:
    """in=000...07 is in=7: Python's int() refuses the string, the service must not."""
    status, body = asyncio.run(_get(b"in=" + b"0" * 4300 + b"7&nap=0&processes=1"))
    assert status == 200, body
    assert b"highest prime below 7 as 5" in body
    status, body = asyncio.run(_get(b"in=-" + b"9" * 5000 + b"&nap=0&processes=1"))
    assert status == 400
    assert b"which is too small" in body
