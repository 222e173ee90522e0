"""Cold start, the cost of scale-from-zero: process exec to first 200, service vs bare app.

    python -m benchmarks.coldstart [--runs 10] [--libraries]

Runs are interleaved (service, floor, bare, service, ...) so all see the same machine noise;
prints a markdown table with medians and their ratios to the bare app and to the floor (the bare
app after importing the service's libraries, benchmarks/floor_app.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from benchmarks.output import median_rows, table
from benchmarks.service_process import ROOT, bench_env, wait_for_200
from e2e.context import free_port

REQUEST = "/?in=10000&nap=0&processes=50"
SERVICE = "service"
BARE = "bare Starlette app"
FLOOR = "floor: bare app + the service's libraries"
# The service as Knative runs it, spans exported to a collector (the Zipkin exporter loads at
# the first export; a refused connection after the first 200 costs the measure nothing).
EXPORTING = "service, spans exported"
EXPORTING_ENV = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://127.0.0.1:9/api/v2/spans"}


def commands(python: str = sys.executable) -> dict[str, list[str]]:
    """The service and its baseline, run by ``python`` (the image-like venv in `make bench`)."""
    return {
        SERVICE: [python, "-m", "service"],
        BARE: [python, "-m", "benchmarks.bare_app"],
    }


def time_to_first_200(
    command: list[str],
    path: str = REQUEST,
    timeout: float = 20,
    env_overrides: dict[str, str] | None = None,
) -> float:
    """Seconds from exec to the first 200 answer on ``path``; the process is then stopped."""
    port = free_port()
    env = bench_env(PORT=str(port), **(env_overrides or {}))
    # Its log is kept out of the table (an exporter with no collector warns), shown on failure.
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            try:
                wait_for_200(port, path, timeout)
            except TimeoutError:
                log.seek(0)
                raise RuntimeError(
                    f"{command} gave no 200 within {timeout} s:\n{log.read().decode()[-2000:]}"
                ) from None
            return time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(10)


# With --libraries: the floor of some of the libraries only, what each costs.
PARTIAL_FLOORS = (["tracing"], ["metrics"], ["tracing", "metrics"])


def measure(
    runs: int, python: str = sys.executable, partial_floors: bool = False
) -> dict[str, list[float]]:
    """Seconds to first 200 of the service (without and with an exporter), the floor (and, if
    ``partial_floors``, the floors of PARTIAL_FLOORS) and the bare app, ``runs`` times,
    interleaved."""
    apps = commands(python)
    floor = [python, "-m", "benchmarks.floor_app"]
    runs_of = {
        SERVICE: (apps[SERVICE], {}),
        EXPORTING: (apps[SERVICE], EXPORTING_ENV),
        FLOOR: (floor, {}),
        **{
            f"floor of {' + '.join(libraries)} only": ([*floor, *libraries], {})
            for libraries in (PARTIAL_FLOORS if partial_floors else ())
        },
        BARE: (apps[BARE], {}),
    }
    results: dict[str, list[float]] = {name: [] for name in runs_of}
    for command, env in runs_of.values():
        time_to_first_200(command, env_overrides=env)  # warm-up: writes the bytecode caches
    for _ in range(runs):
        for name, (command, env) in runs_of.items():
            results[name].append(time_to_first_200(command, env_overrides=env))
    return results


def rows(results: dict[str, list[float]]) -> list[list[str]]:
    """A row per app: its median in ms and that median's ratios to the bare app and the floor."""
    return median_rows(results, BARE, FLOOR, scale=1000)


HEADER = "| cold start (exec to first 200) | median ms | ratio to bare | ratio to the floor |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the apps")
    parser.add_argument(
        "--libraries", action="store_true", help="add the floors of some libraries only"
    )
    args = parser.parse_args()
    table(HEADER, rows(measure(args.runs, args.python, args.libraries)))


if __name__ == "__main__":
    main()
