"""Container probes as the kubelet runs them (httpGet, tcpSocket), for pods and Knative processes.

Knative tells the kubelet's probes from traffic by their User-Agent (kube-probe/MAJOR.MINOR), so
the header is part of the contract, not decoration.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp

USER_AGENT = "kube-probe/1.36"
_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates


def port_number(port: Any, ports: Mapping[str, int]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    if port in ports:
        return ports[port]
    raise ValueError(f"probe port {port!r} names no container port")


async def run(
    probe: Mapping[str, Any],
    host: str,
    ports: Mapping[str, int],
    session: aiohttp.ClientSession,
) -> bool:
    """One probe of ``host``: True on success (HTTP 200-399, or a TCP connection)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        action = probe["httpGet"]
        port = port_number(action.get("port"), ports)
        scheme = str(action.get("scheme", "HTTP")).lower()
        path = action.get("path", "/")
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        headers.update({h["name"]: h["value"] for h in action.get("httpHeaders", [])})
        url = f"{scheme}://{action.get('host') or host}:{port}{path}"
        try:
            async with session.get(
                url,
                headers=headers,
                ssl=_INSECURE if scheme == "https" else True,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                return 200 <= response.status < 400
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
    if "tcpSocket" in probe:
        port = port_number(probe["tcpSocket"].get("port"), ports)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (TimeoutError, OSError):
            return False
        writer.close()
        return True
    raise ValueError(f"unsupported probe {sorted(probe)}: only httpGet and tcpSocket")
