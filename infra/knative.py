"""A typed Knative Service resource that also registers ``status``.

pulumi-kubernetes' Python ``apiextensions.CustomResource`` registers only apiVersion, kind,
metadata and spec, so the provider's ``status`` never reaches the program
(pulumi/pulumi-kubernetes#1836). This resource registers the same type token with ``status`` as an
output property, so ``status.url`` (the route's domain) can be exported.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import pulumi

from infra.manifest import KNATIVE_API_VERSION

TYPE_TOKEN = f"kubernetes:{KNATIVE_API_VERSION}:Service"


class KnativeService(pulumi.CustomResource):
    """``serving.knative.dev/v1`` Service, managed by the Kubernetes provider."""

    api_version: pulumi.Output[str]
    kind: pulumi.Output[str]
    metadata: pulumi.Output[Any]
    spec: pulumi.Output[Any]
    status: pulumi.Output[Any]

    def __init__(
        self,
        resource_name: str,
        metadata: pulumi.Input[Any],
        spec: pulumi.Input[Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "apiVersion": KNATIVE_API_VERSION,
            "kind": "Service",
            "metadata": metadata,
            "spec": spec,
            "status": None,  # an output only: filled by the provider from the live object
        }
        # The same provider plugin version as the pulumi_kubernetes resources use.
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(version=version("pulumi-kubernetes"))
        )
        super().__init__(TYPE_TOKEN, resource_name, props, opts)

    def translate_output_property(self, prop: str) -> str:
        return {"apiVersion": "api_version"}.get(prop, prop)

    def translate_input_property(self, prop: str) -> str:
        return {"api_version": "apiVersion"}.get(prop, prop)
