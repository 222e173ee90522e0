"""The component: namespace, image and Knative Service of the app, and what to call it at."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_docker_build as docker_build
import pulumi_kubernetes as k8s

from infra import manifest
from infra.config import ROOT, AppConfig
from infra.knative import KnativeService

EXAMPLE_QUERY = "/?in=10000&nap=3&processes=50"


def _field(value: Any, name: str) -> Any:
    """A field of a typed output object or of a plain dict (both shapes reach the program)."""
    if value is None:
        return None
    if isinstance(getattr(type(value), name, None), property):  # a typed output (a dict too)
        return getattr(value, name)
    if isinstance(value, dict):
        head, *rest = name.split("_")
        camel = head + "".join(part.title() for part in rest)
        return value.get(name, value.get(camel))
    return getattr(value, name, None)


def ingress_address(status: Any) -> str:
    """status.loadBalancer.ingress[0]: hostname on AWS-style balancers, else the IP."""
    ingress = _field(_field(status, "load_balancer"), "ingress") or [None]
    first = ingress[0]
    return str(_field(first, "hostname") or _field(first, "ip") or "")


def route_domain(status: Any) -> str:
    """The host of the Knative Service's status.url (the v1 successor of route status.domain)."""
    return urlsplit(str((status or {}).get("url") or "")).hostname or ""


def curl_command(host: str, domain: str) -> str:
    return f'curl -H "Host: {domain}" "http://{host}{EXAMPLE_QUERY}"'


class ServerlessApp(pulumi.ComponentResource):
    """Everything the app needs on a Knative cluster with Istio, under one component."""

    ingress_host: pulumi.Output[str]
    route_domain: pulumi.Output[str]
    url: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    curl: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: AppConfig,
        registry_password: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("myfirstserverlessapp:index:ServerlessApp", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.namespace_name = self._namespace(name, config, child)
        self.image_ref = self._image(name, config, registry_password, child)

        # Only the image field depends on the build: with a new digest unknown during preview,
        # the rest of the spec is still known to the diff and to the policy pack.
        spec = manifest.service_spec(config, self.image_ref)
        metadata = {**manifest.service_metadata(config), "namespace": self.namespace_name}
        self.service = KnativeService(name, metadata=metadata, spec=spec, opts=child)

        if config.grafana_dashboard:
            self.dashboard = self._dashboard(name, config, child)

        self.gateway = k8s.core.v1.Service.get(
            f"{name}-gateway",
            f"{config.gateway_namespace}/{config.gateway_service}",
            opts=child,
        )
        self.ingress_host = self.gateway.status.apply(ingress_address)
        self.url = self.service.status.apply(lambda s: str((s or {}).get("url") or ""))
        self.route_domain = self.service.status.apply(route_domain)
        self.curl = pulumi.Output.all(self.ingress_host, self.route_domain).apply(
            lambda parts: curl_command(parts[0], parts[1])
        )
        self.register_outputs(
            {
                "ingressHost": self.ingress_host,
                "routeDomain": self.route_domain,
                "url": self.url,
                "imageRef": self.image_ref,
                "curl": self.curl,
            }
        )

    def _namespace(
        self, name: str, config: AppConfig, child: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        metadata = manifest.namespace(config)["metadata"]
        if config.create_namespace:
            self.namespace: pulumi.CustomResource = k8s.core.v1.Namespace(
                f"{name}-ns", metadata=metadata, opts=child
            )
        else:
            # An existing namespace: only our label is applied (server-side apply), and only
            # that label is removed on destroy; the namespace itself is never owned.
            self.namespace = k8s.core.v1.NamespacePatch(f"{name}-ns", metadata=metadata, opts=child)
        return self.namespace.metadata.apply(lambda m: _field(m, "name") or config.namespace)

    def _dashboard(
        self, name: str, config: AppConfig, child: pulumi.ResourceOptions
    ) -> k8s.core.v1.ConfigMap:
        document = manifest.dashboard_configmap(config)
        metadata = document["metadata"]
        if config.grafana_dashboard_namespace == config.namespace:
            metadata = {**metadata, "namespace": self.namespace_name}  # created after it
        return k8s.core.v1.ConfigMap(
            f"{name}-dashboard", metadata=metadata, data=document["data"], opts=child
        )

    def _image(
        self,
        name: str,
        config: AppConfig,
        registry_password: pulumi.Input[str] | None,
        child: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        image = config.image
        if not image.build:
            return pulumi.Output.from_input(image.ref)
        registries = []
        if image.registry_server:
            registries.append(
                docker_build.RegistryArgs(
                    address=image.registry_server,
                    username=image.registry_username or None,
                    password=registry_password,
                )
            )
        self.image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=str(ROOT)),
            dockerfile=docker_build.DockerfileArgs(location=str(ROOT / "Dockerfile")),
            build_args={"BASE_IMAGE": image.base_image},
            platforms=[docker_build.Platform(image.platform)],
            tags=[manifest.pushed_tag(config, pulumi.get_stack())],
            push=True,
            # A preview plans and checks the policies; `up` builds. (The provider's default
            # builds on every preview, and v0.0.22 then skips it anyway, warning that inputs are
            # unknown when none are.)
            build_on_preview=False,
            registries=registries,
            opts=child,
        )
        # By digest: every build is a new Knative revision, and the revision pins what it runs.
        return pulumi.Output.concat(image.repository, "@", self.image.digest)
