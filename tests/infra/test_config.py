"""Config checks: one case per rule, each message naming the key, the value and what is allowed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from infra import config as config_module
from infra.config import ConfigError, declared, parse, stack_values
from infra.rules import duration_seconds, quantity

P = "myfirstserverlessapp"


def test_bosun_stack_is_the_original_demo() -> None:
    config = parse(stack_values("bosun"))
    assert config.namespace == "hackathon-pi-knative"
    assert config.autoscaling.target == "1"
    assert (config.autoscaling.min_scale, config.autoscaling.max_scale) == (0, 10)
    assert config.autoscaling.klass == "kpa.autoscaling.knative.dev"


def test_every_declared_key_has_type_default_and_description() -> None:
    for key, spec in declared().items():
        assert {"type", "default", "description"} <= set(spec), key
        assert spec["type"] in ("string", "integer", "boolean", "array"), key
        # The engine refuses a stack whose value of a `secret: true` key is plain text, and a
        # default is plain text: such a key would have to be set in every stack.
        assert not spec.get("secret"), key


def test_the_program_reads_every_declared_key(monkeypatch: pytest.MonkeyPatch) -> None:
    read: set[str] = set()
    original = config_module._Reader.raw

    def spy(self: Any, key: str) -> Any:
        read.add(key)
        return original(self, key)

    monkeypatch.setattr(config_module._Reader, "raw", spy)
    parse({"imageRepository": "docker.io/me/app"})
    assert read == set(declared()) - config_module.SECRET_KEYS


def test_defaults_come_from_pulumi_yaml() -> None:
    config = parse({"imageRepository": "docker.io/me/app"})
    assert config.namespace == declared()["namespace"]["default"]
    assert config.autoscaling.max_scale == declared()["maxScale"]["default"]


BUILD = {"imageRepository": "docker.io/me/app"}
CASES: list[tuple[dict[str, Any], str]] = [
    ({"serviceName": "My_App"}, "serviceName='My_App': not allowed; allowed: a DNS-1035 label"),
    ({"serviceName": "a" * 64}, "allowed: a DNS-1035 label of at most 63 characters"),
    ({"namespace": "Bad NS"}, "namespace='Bad NS': not allowed; allowed: a DNS-1123 label"),
    ({"colour": "red;x"}, "colour='red;x': not allowed; allowed: a CSS colour name (e.g. blue) or #rgb, #rgba, #rrggbb, #rrggbbaa"),
    ({"colour": "notacolour"}, "colour='notacolour': not allowed; allowed: a CSS colour name (e.g. blue) or #rgb, #rgba, #rrggbb, #rrggbbaa"),
    ({"zipkinEndpoint": "zipkin:9411"}, "zipkinEndpoint='zipkin:9411': not allowed; allowed: empty"),
    ({"containerPort": 8012}, "containerPort=8012: not allowed; allowed: any port but Knative's"),
    ({"containerPort": 0}, "containerPort=0: not allowed; allowed: an integer from 1 to 65535"),
    ({"containerConcurrency": 1001}, "containerConcurrency=1001: not allowed; allowed: an integer from 0 to 1000"),
    ({"timeoutSeconds": 601}, "timeoutSeconds=601: not allowed; allowed: an integer from 1 to 600"),
    ({"timeoutSeconds": "ten"}, "timeoutSeconds='ten': not allowed; allowed: an integer from 1 to 600"),
    ({"cpuRequest": "lots"}, "cpuRequest='lots': not allowed; allowed: a Kubernetes quantity of at least 0"),
    ({"memoryLimit": "-1"}, "memoryLimit='-1': not allowed; allowed: a Kubernetes quantity of at least 0"),
    ({"cpuRequest": "2", "cpuLimit": "1"}, "cpuRequest='2': not allowed; allowed: at most cpuLimit (1)"),
    ({"memoryRequest": "1Gi", "memoryLimit": "512Mi"}, "memoryRequest='1Gi': not allowed; allowed: at most memoryLimit"),
    ({"autoscalingClass": "kpa"}, "autoscalingClass='kpa': not allowed; allowed: kpa.autoscaling.knative.dev or hpa.autoscaling.knative.dev"),
    ({"autoscalingMetric": "cpu"}, "autoscalingMetric='cpu': not allowed; allowed: concurrency or rps"),
    ({"autoscalingTarget": "0.001"}, "autoscalingTarget='0.001': not allowed; allowed: a number of at least 0.01"),
    ({"autoscalingTarget": "nan"}, "autoscalingTarget='nan': not allowed; allowed: a number of at least 0.01"),
    ({"targetUtilizationPercentage": 101}, "targetUtilizationPercentage=101: not allowed; allowed: an integer from 1 to 100"),
    ({"minScale": -1}, "minScale=-1: not allowed; allowed: an integer from 0 to 2147483647"),
    ({"minScale": 3, "maxScale": 2}, "maxScale=2: not allowed; allowed: 0 (unbounded) or at least minScale (3)"),
    ({"autoscalingClass": "hpa.autoscaling.knative.dev", "autoscalingMetric": ""}, "autoscalingMetric='': not allowed; allowed: cpu, memory or a custom metric's name with hpa"),
    ({"initialScale": 0}, "initialScale=0: not allowed; allowed: an integer from 1 to"),
    ({"window": "5s"}, "window='5s': not allowed; allowed: a whole number of seconds from 6s to 60m"),
    ({"window": "2h"}, "window='2h': not allowed; allowed: a whole number of seconds from 6s to 60m"),
    ({"window": "6.5s"}, "window='6.5s': not allowed; allowed: a whole number of seconds from 6s to 60m"),
    ({"window": "soon"}, "window='soon': not allowed; allowed: a whole number of seconds"),
    ({"scaleToZeroRetention": "61m"}, "scaleToZeroRetention='61m': not allowed; allowed: a duration from 0s to 60m"),
    ({"scaleDownDelay": "-1s"}, "scaleDownDelay='-1s': not allowed; allowed: a whole number of seconds from 0s to 60m"),
    ({"scaleDownDelay": "1.5s"}, "scaleDownDelay='1.5s': not allowed; allowed: a whole number of seconds from 0s to 60m"),
    ({"panicWindowPercentage": 0}, "panicWindowPercentage=0: not allowed; allowed: an integer from 1 to 100"),
    ({"panicThresholdPercentage": 109}, "panicThresholdPercentage=109: not allowed; allowed: an integer from 110 to 1000"),
    ({"panicThresholdPercentage": 1001}, "panicThresholdPercentage=1001: not allowed; allowed: an integer from 110 to 1000"),
    ({"traffic": ["latest:90"]}, "traffic=['latest:90']: percents sum to 90; allowed: percents that sum to 100"),
    ({"traffic": ["latest"]}, "traffic='latest': not allowed; allowed: entries REVISION:PERCENT[:TAG]"),
    ({"traffic": ["Rev_1:100"]}, "traffic='Rev_1:100': not allowed; allowed: a revision name that is a DNS-1035 label"),
    ({"traffic": ["latest:150"]}, "traffic='latest:150': not allowed; allowed: percents from 0 to 100"),
    ({"traffic": ["a-1:50:x", "latest:50:x"]}, "allowed: each tag once"),
    ({"traffic": "not json"}, "traffic='not json': not allowed; allowed: a list of strings"),
    ({"imageRepository": ""}, "imageRepository='': required when imageBuild is true"),
    ({"imageRepository": "docker.io/me/app:v1"}, "imageRepository='docker.io/me/app:v1': not a repository"),
    ({"imageBuild": False, "imageRef": "docker.io/me/app:v1"}, "imageRef='docker.io/me/app:v1': not pinned by digest; allowed: an image pinned by digest"),
    ({"imageBuild": False}, "imageRef='': required when imageBuild is false"),
    ({"imageBuild": "yes"}, "imageBuild='yes': not allowed; allowed: true or false"),
    ({"imagePlatform": "amd64"}, "imagePlatform='amd64': not allowed; allowed: os/arch"),
    ({"baseImage": "not an image"}, "baseImage='not an image': not allowed; allowed: an image reference"),
    ({"gatewayNamespace": "-x"}, "gatewayNamespace='-x': not allowed; allowed: a DNS-1123 label"),
    ({"gatewayService": "9gw"}, "gatewayService='9gw': not allowed; allowed: a DNS-1035 label"),
    ({"env": ["PORT=9000"]}, "env='PORT=9000': not allowed; allowed: any name but Knative's reserved K_CONFIGURATION, K_REVISION, K_SERVICE, PORT"),
    ({"env": ["K_SERVICE=x"]}, "env='K_SERVICE=x': not allowed; allowed: any name but Knative's reserved"),
    ({"env": ["COLOUR=red"]}, "env='COLOUR=red': not allowed; allowed: a name not set by another key"),
    ({"env": ["LOG LEVEL=debug"]}, "env='LOG LEVEL=debug': not allowed; allowed: entries NAME=VALUE"),
    ({"env": ["A=1", "A=2"]}, "env='A=2': not allowed; allowed: each name once"),
    ({"env": ["HOST=127.0.0.1"]}, "env='HOST=127.0.0.1': not allowed; allowed: any name but HOST, which the image sets"),
    ({"env": ["MAX_IN=abc"]}, "env='MAX_IN=abc': the service would not start: MAX_IN='abc' is not an integer from 3 to"),
    ({"env": ["LOG_LEVEL=loud"]}, "env='LOG_LEVEL=loud': the service would not start: LOG_LEVEL='loud' is not one of critical"),
    ({"env": ["FOO=1", "MAX_PROCESSES=0"]}, "env='MAX_PROCESSES=0': the service would not start: MAX_PROCESSES=0 is out of range"),
    ({"grafanaDashboard": "on"}, "grafanaDashboard='on': not allowed; allowed: true or false"),
    ({"grafanaDashboardNamespace": "Monitoring"}, "grafanaDashboardNamespace='Monitoring': not allowed; allowed: empty or a DNS-1123 label"),
    ({"replicas": 3}, "myfirstserverlessapp:replicas: unknown key"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "message"), CASES, ids=[m.split(":")[0] for _, m in CASES])
def test_bad_values_are_refused_with_key_value_and_allowed_range(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({**BUILD, **values})
    text = str(caught.value)
    assert text.startswith(f"{P}:")
    assert message in text


def test_env_values_the_service_accepts_pass() -> None:
    config = parse({**BUILD, "env": ["LOG_LEVEL=debug", "MAX_PROCESSES=1000000", "FOO=bar"]})
    assert dict(config.env) == {"LOG_LEVEL": "debug", "MAX_PROCESSES": "1000000", "FOO": "bar"}


def test_engine_strings_are_parsed_like_yaml_values() -> None:
    from_engine = parse(
        {**BUILD, "maxScale": "7", "createNamespace": "false", "traffic": '["latest:100"]'}
    )
    from_yaml = parse({**BUILD, "maxScale": 7, "createNamespace": False, "traffic": ["latest:100"]})
    assert from_engine == from_yaml


def test_missing_stack_file_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"no stack file Pulumi\.nowhere\.yaml"):
        stack_values("nowhere")


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("1m30s", 90), ("1h", 3600), ("500ms", 0.5), ("6", None)]
)
def test_durations(text: str, seconds: float | None) -> None:
    assert duration_seconds(text) == seconds


QUANTITIES = [
    ("500m", "0.5"), ("1", "1"), ("128Mi", str(128 * 2**20)), ("1G", str(10**9)),
    ("1e3", "1000"), ("1.5E-3", "0.0015"), ("+2", "2"), ("-1", "-1"), ("250u", "0.00025"),
    ("1x", None), ("Mi", None), ("1e", None), ("1Mie3", None),
]  # fmt: skip


@pytest.mark.parametrize(("text", "amount"), QUANTITIES)
def test_quantities(text: str, amount: str | None) -> None:
    assert quantity(text) == (Decimal(amount) if amount is not None else None)


def test_the_dashboard_goes_to_the_apps_namespace_unless_another_is_named() -> None:
    assert parse(BUILD).grafana_dashboard is False
    assert parse(BUILD).grafana_dashboard_namespace == declared()["namespace"]["default"]
    chosen = parse({**BUILD, "grafanaDashboard": True, "grafanaDashboardNamespace": "monitoring"})
    assert (chosen.grafana_dashboard, chosen.grafana_dashboard_namespace) == (True, "monitoring")
