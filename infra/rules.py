"""Pure predicates and constants of Knative and Kubernetes, shared by config and policy."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

import webcolors

KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
AUTOSCALER_CLASSES = (KPA, HPA)
# The KPA follows concurrency or rps; the HPA cpu, memory or any custom metric a metrics adapter
# serves, so Knative accepts any metric name with it.
KPA_METRICS = ("concurrency", "rps")
RESERVED_PORTS = frozenset({8012, 8013, 8022, 8008, 9090, 9091})
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
INT32_MAX = 2**31 - 1

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# Kubernetes' quantity grammar (apimachinery resource.Quantity): a signed number, then a binary
# or decimal SI suffix or a decimal exponent.
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)|[eE]([+-]?[0-9]+))?"
)
_SUFFIX = {
    None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("0.001"),
    "k": Decimal(10**3), "M": Decimal(10**6),
    "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# The first component is a registry only when it has a dot or a port, or is localhost (as
# Docker tells docker.io/library names apart); the rest is the repository path, lowercase.
_REGISTRY = rf"(?:(?:{_HOST_PART}(?:\.{_HOST_PART})+(?::[0-9]+)?|{_HOST_PART}:[0-9]+|localhost)/)"
_REPOSITORY = re.compile(rf"{_REGISTRY}?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
_DIGEST = r"(?:@sha256:[a-f0-9]{64})"
_IMAGE = re.compile(rf"{_REPOSITORY.pattern}{_TAG}?{_DIGEST}?")
_PINNED = re.compile(rf"{_REPOSITORY.pattern}{_TAG}?{_DIGEST}")
_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
# CSS Color Level 4's named colours: Level 3's 147, which webcolors lists, and rebeccapurple.
CSS_COLOUR_NAMES = frozenset({*webcolors.names("css3"), "rebeccapurple"})
COLOUR_RULE = "a CSS colour name (e.g. blue) or #rgb, #rgba, #rrggbb, #rrggbbaa"


def is_dns1035(value: str) -> bool:
    return bool(_DNS1035.fullmatch(value))


def is_dns1123(value: str) -> bool:
    return bool(_DNS1123.fullmatch(value))


def is_repository(value: str) -> bool:
    return len(value) <= 255 and bool(_REPOSITORY.fullmatch(value))


def is_image(value: str) -> bool:
    return len(value) <= 400 and bool(_IMAGE.fullmatch(value))


PINNED_IMAGE_RULE = "an image pinned by digest, e.g. docker.io/you/app@sha256:<64 hex digits>"


def is_pinned_image(value: str) -> bool:
    """An image reference that names a digest (repo[:tag]@sha256:...)."""
    return len(value) <= 400 and bool(_PINNED.fullmatch(value))


def is_colour(value: str) -> bool:
    """What the service's COLOUR accepts: a named CSS colour (any case) or a hex colour."""
    return value.lower() in CSS_COLOUR_NAMES or bool(_HEX_COLOUR.fullmatch(value))


def is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def duration_seconds(value: str) -> float | None:
    """Seconds in a Go duration such as 60s, 1m30s or 1h; None if it is not one."""
    if not _DURATION.fullmatch(value):
        return None
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value))


def quantity(value: str) -> Decimal | None:
    """The amount of a Kubernetes quantity such as 500m, 1.5, 128Mi or 1e3; None if it is not
    one."""
    match = _QUANTITY.fullmatch(value)
    if not match or len(value) > 100:
        return None
    number, suffix, exponent = match.groups()
    try:
        if exponent is not None:
            return Decimal(number).scaleb(int(exponent))
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, ValueError):
        return None
