"""Cold start, the cost of scale-from-zero: process exec to first 200, service vs bare app.

    python -m benchmarks.coldstart [--runs 10]

Runs are interleaved (service, bare, service, ...) so both see the same machine noise; prints a
markdown table with medians and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.output import median_rows, table
from benchmarks.service_process import ROOT, bench_env, free_port, wait_for_200

REQUEST = "/?in=10000&nap=0&processes=50"


def commands(python: str = sys.executable) -> dict[str, list[str]]:
    """The service and its baseline, run by ``python`` (the image-like venv in `make bench`)."""
    return {
        "service": [python, "-m", "service"],
        "bare Starlette app": [python, "-m", "benchmarks.bare_app"],
    }


def time_to_first_200(command: list[str], path: str = REQUEST, timeout: float = 20) -> float:
    """Seconds from exec to the first 200 answer on ``path``; the process is then stopped."""
    port = free_port()
    env = bench_env(PORT=str(port))
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        if not wait_for_200(port, path, started + timeout):
            raise RuntimeError(f"{command} gave no 200 within {timeout} s")
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(10)


def measure(runs: int, python: str = sys.executable) -> dict[str, list[float]]:
    """Seconds to first 200 of each command, ``runs`` times, interleaved."""
    apps = commands(python)
    results: dict[str, list[float]] = {name: [] for name in apps}
    for command in apps.values():
        time_to_first_200(command)  # warm-up: writes the bytecode caches
    for _ in range(runs):
        for name, command in apps.items():
            results[name].append(time_to_first_200(command))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the apps")
    args = parser.parse_args()
    table(
        "| cold start (exec to first 200) | median ms | ratio to bare |",
        median_rows(measure(args.runs, args.python), "bare Starlette app", scale=1000),
    )


if __name__ == "__main__":
    main()
