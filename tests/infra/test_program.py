"""The Pulumi program under mocks: the resources it registers and the outputs it exports."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from infra.config import stack_values
from tests.infra.mocks import DIGEST, GKE_GATEWAY, ClusterMocks, Program, run_program

COMPONENT = "myfirstserverlessapp:index:ServerlessApp"
KSVC = "kubernetes:serving.knative.dev/v1:Service"
AS = "autoscaling.knative.dev/"
SIG_KEY = "4dabf18193072939515e22adb298388d"  # pulumi.runtime.rpc._special_sig_key
SIG_OF_SECRETS = "1b47061264138c4ac30d75fd1eb44270"  # pulumi.runtime.rpc._special_secret_sig
REPOSITORY = "docker.io/myfirstserverlessapp/myfirstserverlessapp"
DOMAIN = "myfirstserverlessapp.hackathon-pi-knative.example.com"
AWS_HOST = "a75b17d8.eu-west-1.elb.amazonaws.com"


def _engine_strings(values: dict[str, Any]) -> dict[str, str]:
    """Stack-file values as the engine hands them to the program: strings, JSON for lists."""

    def encode(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(value) if isinstance(value, list) else str(value)

    return {key: encode(value) for key, value in values.items()}


BOSUN = _engine_strings(stack_values("bosun"))


def _ksvc(program: Program) -> dict[str, Any]:
    (service,) = program.mocks.of_type(KSVC)
    inputs: dict[str, Any] = service.inputs
    return inputs


def _container(program: Program) -> dict[str, Any]:
    (container,) = _ksvc(program)["spec"]["template"]["spec"]["containers"]
    checked: dict[str, Any] = container
    return checked


@pulumi.runtime.test
def test_bosun_stack_registers_namespace_image_service_and_reads_the_gateway() -> Any:
    program = run_program(BOSUN)

    def check(_: dict[str, Any]) -> None:
        registered = program.mocks.registered
        custom = [(r.typ, r.name, r.resource_id) for r in registered if r.typ != COMPONENT]
        assert sorted(custom) == sorted(
            [
                ("kubernetes:core/v1:Namespace", "myfirstserverlessapp-ns", None),
                ("docker-build:index:Image", "myfirstserverlessapp-image", None),
                (KSVC, "myfirstserverlessapp", None),
                (
                    "kubernetes:core/v1:Service",
                    "myfirstserverlessapp-gateway",
                    "istio-system/istio-ingressgateway",
                ),
            ]
        )
        (namespace,) = program.mocks.of_type("kubernetes:core/v1:Namespace")
        assert namespace.inputs["metadata"] == {
            "name": "hackathon-pi-knative",
            "labels": {"istio-injection": "enabled"},
        }

    def check_parents(urns: list[str]) -> None:
        for urn in urns:
            assert f"::{COMPONENT}$" in urn, f"{urn} is not a child of the component"

    children = pulumi.Output.all(*(child.urn for child in program.children()))
    return pulumi.Output.all(program.then(check), children.apply(check_parents))


@pulumi.runtime.test
def test_bosun_autoscaling_annotations_sit_on_the_revision_template() -> Any:
    program = run_program(BOSUN)

    def check(_: dict[str, Any]) -> None:
        service = _ksvc(program)
        template = service["spec"]["template"]["metadata"]["annotations"]
        assert template[f"{AS}class"] == "kpa.autoscaling.knative.dev"
        assert template[f"{AS}metric"] == "concurrency"
        assert template[f"{AS}target"] == "1"
        assert template[f"{AS}target-utilization-percentage"] == "70"
        assert template[f"{AS}min-scale"] == "0"
        assert template[f"{AS}max-scale"] == "10"
        assert template[f"{AS}initial-scale"] == "1"
        assert template[f"{AS}window"] == "60s"
        assert service["metadata"]["annotations"] == {"pulumi.com/waitFor": "condition=Ready"}
        assert service["metadata"]["namespace"] == "hackathon-pi-knative"

    return program.then(check)


@pulumi.runtime.test
def test_bosun_container_runs_the_built_image_by_digest_with_probes_and_limits() -> Any:
    program = run_program(BOSUN)

    def check(_: dict[str, Any]) -> None:
        container = _container(program)
        assert container["image"] == f"{REPOSITORY}@{DIGEST}"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["COLOUR"] == "blue"
        assert env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == (
            "http://zipkin.istio-system:9411/api/v2/spans"
        )
        (image,) = program.mocks.of_type("docker-build:index:Image")
        assert image.inputs["push"] is True
        assert image.inputs["buildOnPreview"] is False
        assert image.inputs["buildArgs"] == {"BASE_IMAGE": "python:3.11-slim-bookworm"}
        assert image.inputs["tags"] == [f"{REPOSITORY}:bosun"]
        assert image.inputs["dockerfile"]["location"].endswith("/Dockerfile")
        assert "registries" not in image.inputs or not image.inputs["registries"]

    return program.then(check)


@pulumi.runtime.test
def test_outputs_come_from_the_gateway_and_the_knative_status() -> Any:
    def check(outputs: dict[str, Any]) -> None:
        assert outputs == {
            "ingressHost": AWS_HOST,
            "routeDomain": DOMAIN,
            "url": f"http://{DOMAIN}",
            "imageRef": f"{REPOSITORY}@{DIGEST}",
            "curl": f'curl -H "Host: {DOMAIN}" "http://{AWS_HOST}/?in=10000&nap=3&processes=50"',
        }

    return run_program(BOSUN).then(check)


@pulumi.runtime.test
def test_gateway_with_an_ip_address_as_on_gke_or_metallb() -> Any:
    def check(outputs: dict[str, Any]) -> None:
        assert outputs["ingressHost"] == "203.0.113.7"
        assert outputs["curl"].endswith('"http://203.0.113.7/?in=10000&nap=3&processes=50"')

    return run_program(BOSUN, ClusterMocks(gateway_status=dict(GKE_GATEWAY))).then(check)


@pulumi.runtime.test
def test_existing_namespace_is_labelled_by_a_patch_not_owned() -> Any:
    program = run_program({**BOSUN, "createNamespace": "false"})

    def check(_: dict[str, Any]) -> None:
        assert program.mocks.of_type("kubernetes:core/v1:Namespace") == []
        (patch,) = program.mocks.of_type("kubernetes:core/v1:NamespacePatch")
        assert patch.inputs["metadata"] == {
            "name": "hackathon-pi-knative",
            "labels": {"istio-injection": "enabled"},
        }
        assert _ksvc(program)["metadata"]["namespace"] == "hackathon-pi-knative"

    return program.then(check)


@pulumi.runtime.test
def test_without_a_build_the_given_pinned_image_is_deployed() -> Any:
    ref = f"ghcr.io/example/faas@{DIGEST}"
    program = run_program({**BOSUN, "imageBuild": "false", "imageRef": ref})

    def check(outputs: dict[str, Any]) -> None:
        assert program.mocks.of_type("docker-build:index:Image") == []
        assert _container(program)["image"] == ref
        assert outputs["imageRef"] == ref

    return program.then(check)


@pulumi.runtime.test
def test_traffic_split_for_blue_green() -> Any:
    traffic = json.dumps(["myfirstserverlessapp-00001:90:blue", "latest:10:green"])
    program = run_program({**BOSUN, "traffic": traffic})

    def check(_: dict[str, Any]) -> None:
        assert _ksvc(program)["spec"]["traffic"] == [
            {"revisionName": "myfirstserverlessapp-00001", "percent": 90, "tag": "blue"},
            {"latestRevision": True, "percent": 10, "tag": "green"},
        ]

    return program.then(check)


@pulumi.runtime.test
def test_extra_environment_reaches_the_container() -> Any:
    program = run_program({**BOSUN, "env": json.dumps(["LOG_LEVEL=debug", "MAX_IN=1000000"])})

    def check(_: dict[str, Any]) -> None:
        env = {e["name"]: e["value"] for e in _container(program)["env"]}
        assert env["LOG_LEVEL"] == "debug"
        assert env["MAX_IN"] == "1000000"

    return program.then(check)


@pulumi.runtime.test
def test_hpa_on_cpu() -> Any:
    config = {
        **BOSUN,
        "autoscalingClass": "hpa.autoscaling.knative.dev",
        "autoscalingMetric": "cpu",
        "autoscalingTarget": "80",
        "minScale": "1",
    }
    program = run_program(config)

    def check(_: dict[str, Any]) -> None:
        annotations = _ksvc(program)["spec"]["template"]["metadata"]["annotations"]
        assert annotations[f"{AS}class"] == "hpa.autoscaling.knative.dev"
        assert annotations[f"{AS}metric"] == "cpu"
        assert annotations[f"{AS}target"] == "80"
        assert annotations[f"{AS}min-scale"] == "1"
        assert f"{AS}window" not in annotations  # a KPA-only knob

    return program.then(check)


@pulumi.runtime.test
def test_registry_credentials_reach_the_build_and_the_password_stays_secret() -> Any:
    config = {**BOSUN, "registryServer": "docker.io", "registryUsername": "bot"}
    program = run_program(config, secrets={"registryPassword": "s3cret"})

    def check(_: dict[str, Any]) -> None:
        (image,) = program.mocks.of_type("docker-build:index:Image")
        registries = image.inputs["registries"]
        # The engine receives the registries as a secret value (Pulumi's secret signature).
        assert registries[SIG_KEY] == SIG_OF_SECRETS
        assert registries["value"] == [
            {"address": "docker.io", "username": "bot", "password": "s3cret"}
        ]

    return program.then(check)


def test_bad_config_fails_before_anything_is_created() -> None:
    mocks = ClusterMocks()
    with pytest.raises(pulumi.RunError, match=r"^myfirstserverlessapp:maxScale=-1: not allowed"):
        run_program({**BOSUN, "maxScale": "-1"}, mocks)
    assert mocks.registered == []


@pulumi.runtime.test
def test_in_preview_of_a_new_build_only_the_image_is_unknown() -> Any:
    """The digest is unknown until the build: the rest of the spec must still be known, or
    the preview's diff and the policy pack see nothing of the Knative Service."""
    program = run_program(BOSUN, ClusterMocks(preview=True))

    def check(_: list[Any]) -> None:
        spec = _ksvc(program)["spec"]
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations[f"{AS}max-scale"] == "10"
        container = _container(program)
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
        assert isinstance(container["image"], pulumi.output.Unknown)

    return pulumi.Output.all(*(child.urn for child in program.children())).apply(check)


@pulumi.runtime.test
def test_grafana_dashboard_configmap_when_the_stack_asks_for_it() -> Any:
    program = run_program({**BOSUN, "grafanaDashboard": "true"})

    def check(_: dict[str, Any]) -> None:
        (configmap,) = program.mocks.of_type("kubernetes:core/v1:ConfigMap")
        metadata = configmap.inputs["metadata"]
        assert metadata["name"] == "myfirstserverlessapp-dashboard"
        assert metadata["namespace"] == "hackathon-pi-knative"
        assert metadata["labels"]["grafana_dashboard"] == "1"
        (board,) = configmap.inputs["data"].values()
        variables = {v["name"]: v for v in json.loads(board)["templating"]["list"]}
        assert variables["namespace"]["current"]["value"] == "hackathon-pi-knative"

    def check_parent(urn: str) -> None:
        assert f"::{COMPONENT}$kubernetes:core/v1:ConfigMap::" in urn, urn

    return pulumi.Output.all(
        program.then(check), program.globals["app"].dashboard.urn.apply(check_parent)
    )
