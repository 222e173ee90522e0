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


def from_stack(stack: str) -> dict[str, str]:
    """`pulumi stack output --json` of ``stack``."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise OpsError(
            "no gateway host and route domain: pass --host and --domain, set KNATIVE_HOST and "
            "KNATIVE_DOMAIN, or install the pulumi CLI to read them from the stack's outputs"
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
    """Flags first, then KNATIVE_HOST / KNATIVE_DOMAIN, then the stack's outputs."""
    env = os.environ if env is None else env
    host = host or env.get("KNATIVE_HOST") or None
    domain = domain or env.get("KNATIVE_DOMAIN") or None
    if host is None or domain is None:
        outputs = from_stack(stack)
        host = host or outputs.get("ingressHost") or None
        domain = domain or outputs.get("routeDomain") or None
        if host is None or domain is None:
            raise OpsError(
                f"stack {stack} has no ingressHost and routeDomain outputs; has `pulumi up` run?"
            )
    return Endpoint(host, domain)
