"""The floor under the service's cold start: the bare app, after importing the libraries the
service loads before its first answer, and using none of them.

The service cannot start faster than this while it keeps tracing (the OpenTelemetry SDK, the
ASGI instrumentation), both propagators and its Prometheus metrics; its ratio to this app is
what its own code costs, this app's ratio to the bare one what the libraries cost.
tests/test_coldstart.py checks that these are exactly the third-party packages the service
imports beyond the bare app's.
"""

from __future__ import annotations

import importlib
from types import ModuleType

LIBRARIES = (
    "opentelemetry.sdk.trace.export",
    "opentelemetry.propagators.b3",
    "opentelemetry.instrumentation.asgi",
    "prometheus_client",
)


def load() -> ModuleType:
    """Import the libraries, then the bare app (the service imports its libraries first too)."""
    for name in LIBRARIES:
        importlib.import_module(name)
    return importlib.import_module("benchmarks.bare_app")


if __name__ == "__main__":
    load().main()
