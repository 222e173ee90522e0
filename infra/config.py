"""Typed, checked configuration of the Pulumi program.

Pulumi.yaml declares every key with its type, default and description; this module reads the
stack's values over those defaults and checks each one before anything is created, with the rules
Knative's admission webhook would apply, so a bad value fails `pulumi preview` with a message that
names the key, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from infra import rules

PROJECT = "myfirstserverlessapp"
ROOT = Path(__file__).resolve().parent.parent
SECRET_KEYS = frozenset({"registryPassword"})


class ConfigError(ValueError):
    """A configuration value is malformed or outside what Knative and Kubernetes accept."""


@dataclass(frozen=True)
class Autoscaling:
    klass: str
    metric: str
    target: str
    target_utilization_percentage: int
    min_scale: int
    max_scale: int
    initial_scale: int
    window: str
    scale_to_zero_retention: str
    scale_down_delay: str
    panic_window_percentage: int
    panic_threshold_percentage: int


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


@dataclass(frozen=True)
class TrafficTarget:
    revision: str | None  # None: the latest ready revision
    percent: int
    tag: str | None = None


@dataclass(frozen=True)
class ImageConfig:
    build: bool
    repository: str
    ref: str
    platform: str
    base_image: str
    registry_server: str
    registry_username: str


@dataclass(frozen=True)
class AppConfig:
    service_name: str
    namespace: str
    create_namespace: bool
    colour: str
    zipkin_endpoint: str
    container_port: int
    container_concurrency: int
    timeout_seconds: int
    resources: Resources
    read_only_root_filesystem: bool
    env: tuple[tuple[str, str], ...]
    pi_workers: int
    autoscaling: Autoscaling
    traffic: tuple[TrafficTarget, ...]
    image: ImageConfig
    gateway_namespace: str
    gateway_service: str
    wait_for_ready: bool
    grafana_dashboard: bool
    grafana_dashboard_namespace: str  # the app's namespace unless set


@cache
def declared() -> dict[str, dict[str, Any]]:
    """The config keys declared in Pulumi.yaml, each with its type, default and description."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    keys: dict[str, dict[str, Any]] = project["config"]
    return keys


class _Reader:
    """Typed access to raw values (strings from the engine, or YAML values from a stack file)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        unknown = sorted(set(values) - set(declared()))
        if unknown:
            raise ConfigError(
                f"{PROJECT}:{unknown[0]}: unknown key; declared keys are listed in Pulumi.yaml"
            )
        self.values = values

    def raw(self, key: str) -> Any:
        value = self.values.get(key)
        return declared()[key].get("default") if value is None else value

    def text(self, key: str) -> str:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            fail(key, value, "a string")
        return str(value).strip()

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw(key)
        allowed = f"an integer from {low} to {high}"
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,12}", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, value, allowed)
        if not low <= value <= high:
            fail(key, value, allowed)
        checked: int = value
        return checked

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            fail(key, value, "true or false")
        checked: bool = value
        return checked

    def strings(self, key: str) -> list[str]:
        value = self.raw(key)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except ValueError:
                fail(key, value, "a list of strings")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(key, value, "a list of strings")
        checked: list[str] = value
        return checked

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in options:
            fail(key, value, " or ".join(options))
        return value

    def matching(self, key: str, check: Callable[[str], bool], allowed: str) -> str:
        value = self.text(key)
        if not check(value):
            fail(key, value, allowed)
        return value


def fail(key: str, value: Any, allowed: str, problem: str = "not allowed") -> None:
    raise ConfigError(f"{PROJECT}:{key}={value!r}: {problem}; allowed: {allowed}")


def _number(key: str, value: str, low: float) -> str:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < low:
        fail(key, value, f"a number of at least {low}")
    return value


def _duration(read: _Reader, key: str, low: int, high: int, *, whole: bool = False) -> str:
    """A Go duration from ``low`` to ``high`` seconds; ``whole``: in whole seconds, as
    Knative's webhook requires of the window and the scale-down delay."""
    value = read.text(key)
    seconds = rules.duration_seconds(value)
    unit = "a whole number of seconds" if whole else "a duration"
    allowed = f"{unit} from {low}s to {high // 60}m, e.g. 60s or 1m30s"
    if seconds is None or not low <= seconds <= high or (whole and seconds != int(seconds)):
        fail(key, value, allowed)
    return value


def _quantity(read: _Reader, key: str) -> tuple[str, Decimal]:
    value = read.text(key)
    amount = rules.quantity(value)
    if amount is None or amount < 0:
        fail(key, value, "a Kubernetes quantity of at least 0, e.g. 500m, 1, 128Mi, 1Gi, 1e3")
    assert amount is not None
    return value, amount


def _resources(read: _Reader) -> Resources:
    values = {}
    for kind in ("cpu", "memory"):
        request, request_amount = _quantity(read, f"{kind}Request")
        limit, limit_amount = _quantity(read, f"{kind}Limit")
        if request_amount > limit_amount:
            fail(f"{kind}Request", request, f"at most {kind}Limit ({limit})")
        values[kind] = (request, limit)
    return Resources(values["cpu"][0], values["cpu"][1], values["memory"][0], values["memory"][1])


def _autoscaling(read: _Reader) -> Autoscaling:
    klass = read.choice("autoscalingClass", rules.AUTOSCALER_CLASSES)
    if klass == rules.KPA:
        metric = read.choice("autoscalingMetric", rules.KPA_METRICS)
    else:
        metric = read.matching(
            "autoscalingMetric", bool, "cpu, memory or a custom metric's name with hpa"
        )
    min_scale = read.integer("minScale", 0, rules.INT32_MAX)
    max_scale = read.integer("maxScale", 0, rules.INT32_MAX)
    if max_scale != 0 and max_scale < min_scale:
        fail("maxScale", max_scale, f"0 (unbounded) or at least minScale ({min_scale})")
    return Autoscaling(
        klass=klass,
        metric=metric,
        target=_number("autoscalingTarget", read.text("autoscalingTarget"), 0.01),
        target_utilization_percentage=read.integer("targetUtilizationPercentage", 1, 100),
        min_scale=min_scale,
        max_scale=max_scale,
        # 0 only where config-autoscaler's allow-zero-initial-scale is on (off by default).
        initial_scale=read.integer("initialScale", 1, rules.INT32_MAX),
        window=_duration(read, "window", 6, 3600, whole=True),
        scale_to_zero_retention=_duration(read, "scaleToZeroRetention", 0, 3600),
        scale_down_delay=_duration(read, "scaleDownDelay", 0, 3600, whole=True),
        panic_window_percentage=read.integer("panicWindowPercentage", 1, 100),
        panic_threshold_percentage=read.integer("panicThresholdPercentage", 110, 1000),
    )


def _traffic(read: _Reader) -> tuple[TrafficTarget, ...]:
    entries = read.strings("traffic")
    allowed = "entries REVISION:PERCENT[:TAG] (REVISION a revision name or 'latest')"
    targets = []
    for entry in entries:
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not re.fullmatch(r"[0-9]{1,3}", parts[1]):
            fail("traffic", entry, allowed)
        revision, percent = parts[0], int(parts[1])
        tag = parts[2] if len(parts) == 3 else None
        if revision != "latest" and not rules.is_dns1035(revision):
            fail("traffic", entry, "a revision name that is a DNS-1035 label, or 'latest'")
        if tag is not None and not rules.is_dns1035(tag):
            fail("traffic", entry, "a tag that is a DNS-1035 label")
        if percent > 100:
            fail("traffic", entry, "percents from 0 to 100")
        targets.append(TrafficTarget(None if revision == "latest" else revision, percent, tag))
    if targets and (total := sum(t.percent for t in targets)) != 100:
        fail("traffic", entries, "percents that sum to 100", problem=f"percents sum to {total}")
    tags = [t.tag for t in targets if t.tag]
    if len(tags) != len(set(tags)):
        fail("traffic", entries, "each tag once")
    return tuple(targets)


def _is_build_platform(value: str) -> bool:
    import pulumi_docker_build  # noqa: PLC0415 (only needed when a build is configured)

    return value in {platform.value for platform in pulumi_docker_build.Platform}


# Set from their own keys (colour, piWorkers, zipkinEndpoint).
MANAGED_ENV = frozenset({"COLOUR", "PI_WORKERS", "OTEL_EXPORTER_ZIPKIN_ENDPOINT"})
# Set by the image: the app listens on all addresses, where Knative's queue-proxy reaches it.
IMAGE_ENV = frozenset({"HOST"})


def _env(read: _Reader) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for entry in read.strings("env"):
        name, equals, value = entry.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            fail("env", entry, "entries NAME=VALUE with NAME a C identifier")
        if name in rules.RESERVED_ENV:
            reserved = ", ".join(sorted(rules.RESERVED_ENV))
            fail("env", entry, f"any name but Knative's reserved {reserved}")
        if name in MANAGED_ENV:
            fail("env", entry, f"a name not set by another key ({', '.join(sorted(MANAGED_ENV))})")
        if name in IMAGE_ENV:
            fail("env", entry, "any name but HOST, which the image sets to 0.0.0.0")
        if name in {n for n, _ in pairs}:
            fail("env", entry, "each name once")
        pairs.append((name, value))
    return tuple(pairs)


def _check_service_env(container_env: dict[str, str], extra: tuple[tuple[str, str], ...]) -> None:
    """The container's environment as the service will read it at start-up, with the service's
    own parser: a value it would refuse fails here, not as a container that never gets Ready."""
    from service.settings import Settings, SettingsError  # noqa: PLC0415

    try:
        Settings.from_env({**container_env, **dict(extra)})
    except SettingsError as error:
        named = str(error).split("=", 1)[0]
        entry = next((f"{k}={v}" for k, v in extra if k == named), f"{named}")
        fail(
            "env",
            entry,
            "values the service accepts (docs/service.md, Environment)",
            problem=f"the service would not start: {error}",
        )


def _image(read: _Reader) -> ImageConfig:
    build = read.boolean("imageBuild")
    repository = read.text("imageRepository")
    ref = read.text("imageRef")
    if build and not rules.is_repository(repository):
        fail(
            "imageRepository",
            repository,
            "a repository to push to, without tag or digest, e.g. docker.io/you/app",
            problem="required when imageBuild is true" if not repository else "not a repository",
        )
    if not build and not rules.is_pinned_image(ref):
        fail(
            "imageRef",
            ref,
            rules.PINNED_IMAGE_RULE,
            problem="required when imageBuild is false" if not ref else "not pinned by digest",
        )
    return ImageConfig(
        build=build,
        repository=repository,
        ref=ref,
        platform=read.matching(
            "imagePlatform", _is_build_platform, "os/arch[/variant], e.g. linux/amd64"
        ),
        base_image=read.matching("baseImage", rules.is_image, "an image reference"),
        registry_server=read.text("registryServer"),
        registry_username=read.text("registryUsername"),
    )


def parse(values: Mapping[str, Any]) -> AppConfig:
    """Check ``values`` (keys without the project prefix) over Pulumi.yaml's defaults."""
    read = _Reader(values)
    label = "a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters"
    namespace = read.matching("namespace", rules.is_dns1123, label)
    port = read.integer("containerPort", 1, 65535)
    if port in rules.RESERVED_PORTS:
        reserved = ", ".join(map(str, sorted(rules.RESERVED_PORTS)))
        fail("containerPort", port, f"any port but Knative's reserved {reserved}")
    zipkin = read.text("zipkinEndpoint")
    if zipkin and not rules.is_http_url(zipkin):
        fail("zipkinEndpoint", zipkin, "empty, or an http(s) URL")
    colour = read.matching("colour", rules.is_colour, rules.COLOUR_RULE)
    pi_workers = read.integer("piWorkers", 1, 64)
    env = _env(read)
    managed = {"PORT": str(port), "COLOUR": colour, "PI_WORKERS": str(pi_workers)}
    _check_service_env({**managed, "OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin}, env)
    return AppConfig(
        service_name=read.matching(
            "serviceName", rules.is_dns1035, "a DNS-1035 label of at most 63 characters"
        ),
        namespace=namespace,
        create_namespace=read.boolean("createNamespace"),
        colour=colour,
        zipkin_endpoint=zipkin,
        container_port=port,
        container_concurrency=read.integer("containerConcurrency", 0, 1000),
        timeout_seconds=read.integer("timeoutSeconds", 1, 600),
        resources=_resources(read),
        read_only_root_filesystem=read.boolean("readOnlyRootFilesystem"),
        env=env,
        pi_workers=pi_workers,
        autoscaling=_autoscaling(read),
        traffic=_traffic(read),
        image=_image(read),
        gateway_namespace=read.matching("gatewayNamespace", rules.is_dns1123, label),
        gateway_service=read.matching(
            "gatewayService", rules.is_dns1035, "a DNS-1035 label of at most 63 characters"
        ),
        wait_for_ready=read.boolean("waitForReady"),
        grafana_dashboard=read.boolean("grafanaDashboard"),
        grafana_dashboard_namespace=read.matching(
            "grafanaDashboardNamespace", lambda v: not v or rules.is_dns1123(v), f"empty or {label}"
        )
        or namespace,
    )


def stack_values(stack: str) -> dict[str, Any]:
    """The project's values in Pulumi.<stack>.yaml, keys without the project prefix."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise ConfigError(f"no stack file {path.name}")
    return file_values(path)


# The top-level keys of a Pulumi stack file (Pulumi.<stack>.yaml).
STACK_FILE_KEYS = frozenset(
    {"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"}
)


def file_values(path: Path) -> dict[str, Any]:
    """The project's values in a stack-style file (a ``config:`` map), without the prefix."""
    try:
        document = yaml.safe_load(path.read_text())
    except UnicodeError:
        raise ConfigError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {(error.strerror or str(error)).lower()}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or "not YAML"
        raise ConfigError(f"{path} is not YAML: {problem}{at}") from None
    if document is None:
        return {}
    not_settings = f"{path} is not a stack's settings"
    if not isinstance(document, dict):
        raise ConfigError(f"{not_settings}: a mapping with a config: key, not a {_kind(document)}")
    if not STACK_FILE_KEYS & set(document):
        raise ConfigError(f"{not_settings}: it has no config: key")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{not_settings}: config: is a {_kind(config)}, not a mapping of keys")
    prefix = f"{PROJECT}:"
    return {
        key.removeprefix(prefix): value
        for key, value in config.items()
        if isinstance(key, str)
        and key.startswith(prefix)
        and key.removeprefix(prefix) not in SECRET_KEYS
    }


def _kind(value: object) -> str:
    """What a YAML value is, in words."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return "number" if isinstance(value, int | float) else type(value).__name__


def from_pulumi() -> AppConfig:
    """The running stack's configuration, as the engine passes it."""
    import pulumi  # noqa: PLC0415 (only the Pulumi program needs the SDK)

    config = pulumi.Config()
    values = {key: config.get(key) for key in declared() if key not in SECRET_KEYS}
    return parse({key: value for key, value in values.items() if value is not None})
