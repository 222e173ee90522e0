"""`faas call`: one request through the gateway, as the original README's curl."""

from __future__ import annotations

import shlex
from urllib.parse import urlencode

import aiohttp

from ops.endpoint import Endpoint, OpsError
from ops.requester import why_unanswered


def url_for(endpoint: Endpoint, in_: int, nap: int, processes: int) -> str:
    query = urlencode({"in": in_, "nap": nap, "processes": processes})
    return f"{endpoint.scheme}://{endpoint.host}/?{query}"


def curl_for(endpoint: Endpoint, url: str, as_json: bool) -> str:
    parts = ["curl", "-H", f"Host: {endpoint.domain}"]
    if as_json:
        parts += ["-H", "Accept: application/json"]
    return shlex.join([*parts, url])


async def call(
    endpoint: Endpoint,
    url: str,
    as_json: bool,
    timeout: float,
    extra: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Send the request with the route's Host header (and EXTRA headers); the status and the
    body.

    ``timeout`` is in seconds for the whole request; 0 means none.
    """
    headers = {"Host": endpoint.domain, **(extra or {})}
    if as_json:
        headers["Accept"] = "application/json"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout or None)) as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError) as error:
        why = why_unanswered(error, timeout)
        raise OpsError(f"GET {url} (Host: {endpoint.domain}): {why}") from None
