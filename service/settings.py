"""Settings, read once from the environment at start-up.

Every value is checked here; a bad one raises :class:`SettingsError` whose message names the
variable, the value received and what is allowed, so ``python -m service`` can print one line
and exit non-zero instead of a traceback.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.compute import PRIMALITY_LIMIT

# Method A is exact below this bound (see compute.py), so MAX_IN may not exceed it.
IN_LIMIT = PRIMALITY_LIMIT
DEFAULT_MAX_IN = 2**63 - 1
DEFAULT_MAX_PROCESSES = 10_000_000
PROCESSES_LIMIT = 100_000_000
MAX_NAP = 10
DEFAULT_SERVICE_NAME = "myfirstserverlessapp"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# CSS's hex colours: #rgb, #rgba, #rrggbb, #rrggbbaa. COLOUR goes into HTML.
_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


class SettingsError(ValueError):
    """A setting in the environment is malformed or out of range."""


@dataclass(frozen=True)
class Settings:
    """The service's configuration; see docs/service.md's "Environment" table."""

    host: str = "127.0.0.1"
    port: int = 8080
    colour: str = "blue"
    max_in: int = DEFAULT_MAX_IN
    max_processes: int = DEFAULT_MAX_PROCESSES
    pi_workers: int = 4
    log_level: str = "info"
    zipkin_endpoint: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    k_service: str | None = None
    k_revision: str | None = None
    k_configuration: str | None = None

    @property
    def revision(self) -> str:
        """The serving revision: K_REVISION on Knative, else this host's name."""
        return self.k_revision or socket.gethostname()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting; raise SettingsError naming the first bad one."""
        env = os.environ if env is None else env

        def text(key: str) -> str | None:
            value = env.get(key, "").strip()
            return value or None

        k_service = text("K_SERVICE")
        return cls(
            host=text("HOST") or cls.host,
            port=_integer(env, "PORT", cls.port, 1, 65535),
            colour=_colour(text("COLOUR") or cls.colour),
            max_in=_integer(env, "MAX_IN", DEFAULT_MAX_IN, 3, IN_LIMIT),
            max_processes=_integer(env, "MAX_PROCESSES", DEFAULT_MAX_PROCESSES, 1, PROCESSES_LIMIT),
            pi_workers=_integer(env, "PI_WORKERS", cls.pi_workers, 1, 64),
            log_level=_choice(env, "LOG_LEVEL", cls.log_level, LOG_LEVELS),
            zipkin_endpoint=_url(text("OTEL_EXPORTER_ZIPKIN_ENDPOINT")),
            service_name=text("OTEL_SERVICE_NAME") or k_service or DEFAULT_SERVICE_NAME,
            k_service=k_service,
            k_revision=text("K_REVISION"),
            k_configuration=text("K_CONFIGURATION"),
        )


def _integer(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,40}", raw):
        raise SettingsError(f"{key}={raw!r} is not an integer from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise SettingsError(f"{key}={raw} is out of range: allowed {low} to {high}")
    return value


def _choice(env: Mapping[str, str], key: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw not in allowed:
        raise SettingsError(f"{key}={raw!r} is not one of {', '.join(allowed)}")
    return raw


def is_css_colour(value: str) -> bool:
    """One of CSS's named colours (any case), or a hex colour."""
    if _HEX_COLOUR.fullmatch(value):
        return True
    import webcolors  # noqa: PLC0415 (only a named COLOUR needs the list)

    # CSS Color Level 4's names: Level 3's 147, which webcolors lists, and rebeccapurple.
    return value.lower() in {*webcolors.names("css3"), "rebeccapurple"}


def _colour(raw: str) -> str:
    if not is_css_colour(raw):
        raise SettingsError(
            f"COLOUR={raw!r} is not a CSS colour: use a CSS colour name such as blue, or "
            "#rgb, #rgba, #rrggbb or #rrggbbaa"
        )
    return raw


def _url(raw: str | None) -> str | None:
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"OTEL_EXPORTER_ZIPKIN_ENDPOINT={raw!r} is not an http(s) URL, "
            "e.g. http://zipkin.istio-system:9411/api/v2/spans"
        )
    return raw
