"""The cold-start floor app imports what the service must import before serving, no more."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.coldstart import time_to_first_200
from benchmarks.service_process import ROOT

# Prints the top-level third-party packages loaded after running the given statement.
_PACKAGES = """
import json, sys
{statement}
own = {{"service", "benchmarks", "tests", "__main__", "__mp_main__"}}
tops = {{name.partition(".")[0] for name in sys.modules}}
print(json.dumps(sorted(tops - set(sys.stdlib_module_names) - own - set(sys.builtin_module_names))))
"""


def third_party_after(statement: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PACKAGES.format(statement=statement)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(json.loads(out))


def test_the_floor_imports_the_third_party_packages_the_service_imports_before_serving() -> None:
    service = third_party_after("import service.__main__")
    floor = third_party_after("import benchmarks.floor_app as f; f.load()")
    metrics = third_party_after("import benchmarks.floor_app as f; f.load(['metrics'])")
    bare = third_party_after("import benchmarks.bare_app")
    assert service == floor
    # The floor is above the bare app by tracing and metrics, not by the exporter's HTTP client
    # (loaded at the first export).
    assert {"opentelemetry", "prometheus_client"} <= floor - bare
    assert not {"requests", "urllib3"} & floor
    assert metrics - bare == {"prometheus_client"}


def test_the_floor_app_answers() -> None:
    seconds = time_to_first_200([sys.executable, "-m", "benchmarks.floor_app"], path="/")
    assert 0 < seconds < 20


def test_an_unknown_library_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.floor_app", "tracing", "numpy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == "unknown libraries ['numpy']; known: tracing, instrumentation, metrics\n"
