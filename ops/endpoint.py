"""Where the app is: the Istio gateway's address and the route domain sent as the Host header."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass


class OpsError(Exception):
    """A problem the operator can fix; the CLI prints it as one line and exits non-zero."""


@dataclass(frozen=True)
class Endpoint:
    host: str  # the gateway: hostname or IP, optionally :port
    domain: str  # the Knative route's domain, sent as Host
    scheme: str = "http"  # how to reach the gateway: http, or https if given as https://...


def gateway(value: str, source: str) -> tuple[str, str]:
    """The scheme and host[:port] of a gateway given as ``host[:port]`` or ``http(s)://host[:port]``.

    ``source`` names where the value came from (``--host``, ``KNATIVE_HOST``, ...) for the error.
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    rest = rest.rstrip("/")
    if scheme.lower() not in ("http", "https") or not _is_host(rest):
        raise OpsError(
            f"{source} {value!r} is not a gateway address such as 10.0.0.1:80 or "
            "http://127.0.0.1:8080"
        )
    return scheme.lower(), rest


def host_name(value: str, source: str = "") -> str:
    """``value`` if it can be a Host header (a name, optionally :port); else an error to fix it."""
    if _is_host(value):
        return value
    bare = value.partition("://")[2].split("/")[0] if "://" in value else ""
    hint = f": give the name alone, e.g. {bare}" if _is_host(bare) else ""
    subject = f"{source} {value!r}" if source else repr(value)
    raise OpsError(f"{subject} is not a host name for the Host header{hint}")


def _is_host(text: str) -> bool:
    return bool(text) and not any(c in text for c in "/?#@ \t")


def from_stack(stack: str, missing: list[str]) -> dict[str, str]:
    """`pulumi stack output --json` of ``stack``, read for the MISSING values ("host",
    "domain")."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        what = {"host": "gateway host", "domain": "route domain"}
        flags = {"host": "--host", "domain": "--domain"}
        names = {"host": "KNATIVE_HOST", "domain": "KNATIVE_DOMAIN"}
        raise OpsError(
            f"no {' and '.join(what[m] for m in missing)}: pass "
            f"{' and '.join(flags[m] for m in missing)}, set "
            f"{' and '.join(names[m] for m in missing)}, or install the pulumi CLI to read "
            f"{'them' if len(missing) > 1 else 'it'} from the stack's outputs"
        )
    done = subprocess.run(
        [pulumi, "stack", "output", "--json", "--stack", stack],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise OpsError(f"pulumi stack output --stack {stack} failed: {last}")
    try:
        outputs = json.loads(done.stdout)
    except ValueError:
        raise OpsError(f"pulumi stack output --stack {stack} did not print JSON") from None
    return {k: str(v) for k, v in outputs.items()} if isinstance(outputs, dict) else {}


def resolve(
    host: str | None, domain: str | None, stack: str, env: Mapping[str, str] | None = None
) -> Endpoint:
    """Flags first, then KNATIVE_HOST / KNATIVE_DOMAIN, then the stack's outputs.

    The gateway may carry a scheme (``http://127.0.0.1:8080``, ``https://gw``), which is used;
    the domain is a Host header value and must be a bare name.
    """
    env = os.environ if env is None else env
    host_from = _first(("--host", host), ("KNATIVE_HOST", env.get("KNATIVE_HOST")))
    domain_from = _first(("--domain", domain), ("KNATIVE_DOMAIN", env.get("KNATIVE_DOMAIN")))
    if host_from is None or domain_from is None:
        missing = [name for name, found in (("host", host_from), ("domain", domain_from))
                   if found is None]  # fmt: skip
        outputs = from_stack(stack, missing)
        host_from = host_from or _first((f"stack {stack} ingressHost", outputs.get("ingressHost")))
        domain_from = domain_from or _first(
            (f"stack {stack} routeDomain", outputs.get("routeDomain"))
        )
        if host_from is None or domain_from is None:
            raise OpsError(
                f"stack {stack} has no ingressHost and routeDomain outputs; has `pulumi up` run?"
            )
    scheme, gateway_host = gateway(host_from[1], host_from[0])
    return Endpoint(gateway_host, host_name(domain_from[1], domain_from[0]), scheme)


def _first(*candidates: tuple[str, str | None]) -> tuple[str, str] | None:
    """The first (source, value) that has a value."""
    return next(((source, value) for source, value in candidates if value), None)
