"""Pulumi mocks standing in for the engine and the cluster: what the provider would answer."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi

DIGEST = "sha256:" + "ab" * 32
AWS_GATEWAY = {"loadBalancer": {"ingress": [{"hostname": "a75b17d8.eu-west-1.elb.amazonaws.com"}]}}
GKE_GATEWAY = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}


@dataclass
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    resource_id: str | None


@dataclass
class ClusterMocks(pulumi.runtime.Mocks):
    """Answers as the Kubernetes and docker-build providers would after a successful `up`."""

    gateway_status: dict[str, Any] = field(default_factory=lambda: dict(AWS_GATEWAY))
    domain_suffix: str = "example.com"
    registered: list[Registered] = field(default_factory=list)
    preview: bool = False  # a preview of a new build: the image's digest is not known yet

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        resource_id = args.resource_id or None  # the mock monitor passes "" for new resources
        self.registered.append(Registered(args.typ, args.name, dict(args.inputs), resource_id))
        outputs = dict(args.inputs)
        if args.typ == "docker-build:index:Image" and not self.preview:
            outputs.update(digest=DIGEST, ref=f"{args.inputs['tags'][0]}@{DIGEST}")
        elif args.typ == "kubernetes:core/v1:Service":
            name, namespace = args.resource_id.split("/")[::-1] if args.resource_id else ("", "")
            outputs = {
                "metadata": {"name": name, "namespace": namespace},
                "status": self.gateway_status,
            }
        elif args.typ == "kubernetes:serving.knative.dev/v1:Service":
            meta = args.inputs["metadata"]
            host = f"{meta['name']}.{meta['namespace']}.{self.domain_suffix}"
            outputs["status"] = {
                "url": f"http://{host}",
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        return f"{args.name}-id", outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.registered if r.typ == typ]


@dataclass
class Program:
    """The result of running infra/__main__.py under mocks."""

    mocks: ClusterMocks
    exports: dict[str, pulumi.Output[Any]]
    globals: dict[str, Any]

    def children(self) -> list[pulumi.Resource]:
        app = self.globals["app"]
        names = ("namespace", "image", "service", "dashboard", "gateway")
        return [getattr(app, name) for name in names if hasattr(app, name)]

    def then(self, check: Callable[[dict[str, Any]], None]) -> pulumi.Output[None]:
        """Run ``check(exports)`` once every export and every child's registration resolved."""
        names = sorted(self.exports)
        urns = [child.urn for child in self.children()]
        return pulumi.Output.all(*(self.exports[n] for n in names), *urns).apply(
            lambda values: check(dict(zip(names, values, strict=False)))
        )


def run_program(
    config: dict[str, str],
    mocks: ClusterMocks | None = None,
    secrets: dict[str, str] | None = None,
) -> Program:
    """Run the Pulumi program as the engine would, with ``config`` (keys without the prefix)."""
    mocks = mocks or ClusterMocks()
    pulumi.runtime.set_mocks(
        mocks, project="myfirstserverlessapp", stack="bosun", preview=mocks.preview
    )
    values = {**config, **(secrets or {})}
    pulumi.runtime.set_all_config(
        {f"myfirstserverlessapp:{key}": value for key, value in values.items()},
        [f"myfirstserverlessapp:{key}" for key in secrets or {}],
    )
    exports: dict[str, pulumi.Output[Any]] = {}
    original: Callable[..., None] = pulumi.export
    pulumi.export = lambda name, value: exports.__setitem__(name, pulumi.Output.from_input(value))
    try:
        namespace = runpy.run_module("infra.__main__", run_name="__main__")
    finally:
        pulumi.export = original
    return Program(mocks, exports, namespace)
