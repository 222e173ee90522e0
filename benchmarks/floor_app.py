"""The floor under the service's cold start: the bare app, after importing the libraries the
service loads before its first answer, and using none of them.

    python -m benchmarks.floor_app [LIBRARY ...]    (all of LIBRARIES by default)

The service cannot start faster than this while it keeps tracing (the OpenTelemetry SDK, the
ASGI instrumentation), both propagators and its Prometheus metrics; its ratio to this app is
what its own code costs, this app's ratio to the bare one what the libraries cost.
tests/test_coldstart.py checks that these are exactly the third-party packages the service
imports beyond the bare app's.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

LIBRARIES = {
    "tracing": ("opentelemetry.sdk.trace.export", "opentelemetry.propagators.b3"),
    "instrumentation": ("opentelemetry.instrumentation.asgi",),
    "metrics": ("prometheus_client",),
}


def load(libraries: list[str] | None = None) -> ModuleType:
    """Import LIBRARIES (those named), then the bare app: the service imports its libraries
    first too."""
    for library in libraries or LIBRARIES:
        for name in LIBRARIES[library]:
            importlib.import_module(name)
    return importlib.import_module("benchmarks.bare_app")


if __name__ == "__main__":
    unknown = set(sys.argv[1:]) - set(LIBRARIES)
    if unknown:
        sys.exit(f"unknown libraries {sorted(unknown)}; known: {', '.join(LIBRARIES)}")
    load(sys.argv[1:]).main()
