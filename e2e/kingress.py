"""A Knative Ingress (KIngress) as routes: what net-istio programs Envoy with, as data.

`routes` turns a KIngress's rules into visibility -> host -> paths; `select` picks the path a
request takes (path prefix, exact headers), `choose` a split by its traffic percent. Pure: the
gateway stand-in (e2e/gateway.py) serves these, and tests/harness tests them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXTERNAL, LOCAL = "ExternalIP", "ClusterLocal"  # a rule's visibility: which gateway serves it


@dataclass(frozen=True)
class Split:
    namespace: str
    service: str
    port: int | str
    percent: int
    headers: dict[str, str]


@dataclass(frozen=True)
class Path:
    prefix: str
    match_headers: dict[str, str]
    splits: tuple[Split, ...]
    headers: dict[str, str]
    rewrite_host: str
    probe_hash: str = ""  # the KIngress's hash, which a probe of this path carries upstream


def ingress_hash(raw: dict[str, Any]) -> str:
    """The KIngress's version, as net-istio's prober tags it: a hash of its spec, namespace
    and name (knative.dev/networking's ComputeHash, over this stand-in's JSON of the spec)."""
    meta = raw["metadata"]
    text = json.dumps(raw.get("spec") or {}, sort_keys=True) + meta["namespace"] + meta["name"]
    return hashlib.sha256(text.encode()).hexdigest()


def routes(raw: dict[str, Any]) -> dict[str, dict[str, list[Path]]]:
    """A KIngress's rules as routes: visibility (ExternalIP, ClusterLocal) -> host -> paths."""
    digest = ingress_hash(raw)
    table: dict[str, dict[str, list[Path]]] = {EXTERNAL: {}, LOCAL: {}}
    for rule in (raw.get("spec") or {}).get("rules", []):
        visibility = rule.get("visibility") or EXTERNAL
        for host in rule.get("hosts", []):
            table.setdefault(visibility, {})[host.lower()] = _paths(rule, digest)
    return table


def _paths(rule: dict[str, Any], digest: str = "") -> list[Path]:
    paths = []
    for path in (rule.get("http") or {}).get("paths", []):
        splits = tuple(
            Split(
                namespace=s["serviceNamespace"],
                service=s["serviceName"],
                port=s["servicePort"],
                percent=int(s.get("percent", 100)),
                headers=dict(s.get("appendHeaders") or {}),
            )
            for s in path.get("splits", [])
        )
        paths.append(
            Path(
                prefix=path.get("path") or "/",
                match_headers={
                    k: v.get("exact", "") for k, v in (path.get("headers") or {}).items()
                },
                splits=splits,
                headers=dict(path.get("appendHeaders") or {}),
                rewrite_host=path.get("rewriteHost") or "",
                probe_hash=digest,
            )
        )
    return paths


def select(paths: list[Path], path: str, headers: Mapping[str, str]) -> Path | None:
    """The first path whose prefix and exact header matches take the request."""
    for candidate in paths:
        if path.startswith(candidate.prefix) and all(
            headers.get(k) == v for k, v in candidate.match_headers.items()
        ):
            return candidate
    return None


def ready(raw: dict[str, Any]) -> bool:
    """The KIngress is Ready at its current generation (marked by an earlier run)."""
    status = raw.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    current = status.get("observedGeneration") == raw["metadata"].get("generation")
    return current and conditions.get("Ready") == "True"


def choose(splits: tuple[Split, ...]) -> Split | None:
    total = sum(s.percent for s in splits)
    if total <= 0:
        return None
    point = random.uniform(0, total)  # noqa: S311 (traffic splitting, not security)
    for split in splits:
        point -= split.percent
        if point <= 0 and split.percent > 0:
            return split
    return splits[-1]
