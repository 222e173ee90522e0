"""Knative Serving's own install files, read from the knative.dev/serving module at run time.

The CRDs, config maps, roles, webhook registrations and Deployments come from config/core of the
module that tools/knative pins (the same one the binaries are built from); nothing of Knative's
is copied into this repository. Module zips leave out symbolic links, and some of config/core's
files are links into its vendored knative.dev/networking and knative.dev/caching: those are read
from the same versions of those modules, which tools/knative's go.sum pins too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from e2e import tools

SERVING = "knative.dev/serving"
NETWORKING = "knative.dev/networking"
CACHING = "knative.dev/caching"
NAMESPACE = "knative-serving"

# config/core files that are links in knative/serving's tree: (module, path in that module).
_LINKS = {
    "300-imagecache.yaml": (CACHING, "config/image.yaml"),
    "300-resources/certificate.yaml": (NETWORKING, "config/certificate.yaml"),
    "300-resources/domain-claim.yaml": (NETWORKING, "config/domain-claim.yaml"),
    "300-resources/ingress.yaml": (NETWORKING, "config/ingress.yaml"),
    "300-resources/serverlessservice.yaml": (NETWORKING, "config/serverlessservice.yaml"),
    "configmaps/network.yaml": (NETWORKING, "config/config-network.yaml"),
}


@cache
def _module(path: str) -> Path:
    return tools.module_dir("knative", path)


def core() -> Path:
    """config/core of the pinned knative.dev/serving."""
    return _module(SERVING) / "config" / "core"


def version() -> str:
    return tools.module_info("knative", SERVING)["Version"]


def _resolved(relative: str) -> Path:
    if relative in _LINKS:
        module, path = _LINKS[relative]
        return _module(module) / path
    return core() / relative


def files(part: str) -> list[Path]:
    """The YAML files of config/core/PART (a directory or a file), links resolved."""
    base = core() / part
    if base.is_file() or part in _LINKS:
        return [_resolved(part)]
    present = {p.relative_to(core()).as_posix() for p in base.glob("*.yaml")}
    linked = {name for name in _LINKS if name.startswith(f"{part}/")}
    return [_resolved(name) for name in sorted(present | linked)]


def documents(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield document


@dataclass(frozen=True)
class Deployment:
    """One of Knative's Deployments (config/core/deployments), with the Services beside it."""

    name: str
    service_account: str
    container: dict[str, Any]
    services: tuple[dict[str, Any], ...]


def deployment(name: str) -> Deployment:
    """Deployment ``name`` of config/core/deployments/NAME.yaml."""
    found = list(documents(files(f"deployments/{name}.yaml")))
    spec = next(d for d in found if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    return Deployment(
        name=name,
        service_account=spec.get("serviceAccountName", "default"),
        container=spec["containers"][0],
        services=tuple(d for d in found if d["kind"] == "Service"),
    )


def crd_files() -> list[Path]:
    return [*files("300-resources"), *files("300-imagecache.yaml")]
