"""`make bench`: every benchmark, each a ratio to a baseline measured in the same run.

    python -m benchmarks.run [--python PY] [--runs 10] [--seconds 5]

The service and the bare Starlette app run under ``--python`` (`make bench` passes a venv with
the image's runtime dependencies only). Latency is every request's own, timed by faas load's
engine; throughput comes from Debian's `hey` (without it that table says so). The deploy times
need the local control plane (`make cluster-up`) and the Pulumi tools (`make tools`), the
first answer from zero against Knative's helloworld (benchmarks/fromzero.py) and the scaling
figures (benchmarks/scaling.py) the control plane; without them those tables say so. Prints
markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import timeit
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

from benchmarks import coldstart
from benchmarks.deploy import deploy_times
from benchmarks.fromzero import from_zero
from benchmarks.output import requests_per_second, table
from benchmarks.scaling import scaling
from benchmarks.service_process import running_service
from ops.requester import Run, Work, execute

REQUESTS = ("/?in=10000&nap=0&processes=50", "/?in=100000&nap=0&processes=5000")
# Exec to first 200 as a ratio to the bare app beside it: the app's share of a scale from zero.
COLD_START_GOAL = 1.1


def _peak_rss_after(command: list[str], path: str, count: int = 100) -> int:
    """VmHWM (peak resident memory) of the process after ``count`` requests to ``path``."""
    with running_service(command) as app:
        for _ in range(count):
            with urllib.request.urlopen(app.url + path) as response:  # noqa: S310 (loopback)
                response.read()
        status = Path(f"/proc/{app.pid}/status").read_text()
    match = re.search(r"VmHWM:\s+([0-9]+) kB", status)
    return int(match.group(1)) * 1024 if match else 0


def cold_start(python: str, runs: int) -> None:
    results = coldstart.measure(runs, python)
    bound = COLD_START_GOAL * statistics.median(results[coldstart.BARE])

    def goal(name: str) -> str:
        if name not in (coldstart.SERVICE, coldstart.EXPORTING):
            return ""
        met = statistics.median(results[name]) <= bound
        return f"<= {COLD_START_GOAL} x bare: " + ("met" if met else "NOT met")

    table(coldstart.HEADER + " goal |", [[*row, goal(row[0])] for row in coldstart.rows(results)])
    commands = coldstart.commands(python)
    rss = {name: _peak_rss_after(cmd, coldstart.REQUEST) for name, cmd in commands.items()}
    table(
        "| memory | service | bare Starlette app | ratio |",
        [
            [
                "peak RSS after 100 requests (MiB)",
                f"{rss[coldstart.SERVICE] / 2**20:.1f}",
                f"{rss[coldstart.BARE] / 2**20:.1f}",
                f"{rss[coldstart.SERVICE] / rss[coldstart.BARE]:.2f}",
            ]
        ],
    )


def _requests_per_second(hey: str, url: str, args: list[str]) -> float:
    """Requests/sec of one hey run."""
    out = subprocess.run([hey, *args, url], capture_output=True, text=True, check=True).stdout
    return requests_per_second(out)


def _median_latency(url: str, seconds: float) -> float:
    """The median of every request's own latency, in seconds, one at a time for SECONDS (faas
    load's engine times each request with perf_counter: hey's summary and CSV give 0.1 ms)."""
    work = Work(url=url, concurrency=1, duration=seconds, timeout=10)
    run = asyncio.run(execute(Run(work)))
    durations = [result.duration for result in run.results if result.status == 200]
    if len(durations) != len(run.results) or not durations:
        raise RuntimeError(f"{url}: {len(run.results) - len(durations)} requests failed")
    return statistics.median(durations)


def latency_and_throughput(python: str, seconds: float) -> None:
    hey = shutil.which("hey")
    if hey is None:
        print("Latency and throughput: skipped, Debian's `hey` is not installed.\n")
        return
    rows = []
    commands = coldstart.commands(python)
    with (
        running_service(commands[coldstart.SERVICE]) as service,
        running_service(commands[coldstart.BARE]) as bare,
    ):
        for path in REQUESTS:
            duration = f"{seconds:g}s"
            s_lat = _median_latency(service.url + path, seconds)
            b_lat = _median_latency(bare.url + path, seconds)
            s_rps = _requests_per_second(hey, service.url + path, ["-z", duration, "-c", "11"])
            b_rps = _requests_per_second(hey, bare.url + path, ["-z", duration, "-c", "11"])
            rows.append([f"`{path}`", f"{s_lat * 1000:.3f}", f"{b_lat * 1000:.3f}",
                         f"{s_lat / b_lat:.2f}", f"{s_rps:.0f}", f"{b_rps:.0f}",
                         f"{s_rps / b_rps:.2f}"])  # fmt: skip
    table(
        f"| request, {seconds:g} s each | median latency c=1, service (ms) | bare (ms) | ratio "
        "| req/s c=11 (hey), service | bare | ratio |",
        rows,
    )


def _best_of_pair(
    ours: Callable[[], object], theirs: Callable[[], object], number: int, repeat: int = 9
) -> tuple[float, float]:
    """Seconds a call, the best of ``repeat`` timings each, taken in turn so a burst of machine
    noise cannot land on one side only."""
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for function, into in ((ours, timings[0]), (theirs, timings[1])):
            into.append(timeit.timeit(function, number=number) / number)
    return min(timings[0]), min(timings[1])


def method_costs() -> None:
    import numpy as np  # noqa: PLC0415 (only this benchmark needs it)
    import sympy  # noqa: PLC0415

    from service.compute import highest_prime_below, leibniz_pi  # noqa: PLC0415

    rows = []
    for exponent in (4, 6, 9, 12, 15, 18):
        n = 10**exponent
        sympy.prevprime(n)  # sympy's sieve and caches are warm, as in a long-running process
        ours, theirs = _best_of_pair(
            partial(highest_prime_below, n), partial(sympy.prevprime, n), 300
        )
        rows.append([f"A, in = 1e{exponent}", f"{ours * 1e6:.1f}", "sympy.prevprime",
                     f"{theirs * 1e6:.1f}", f"{ours / theirs:.2f}",
                     "faster: " + ("met" if ours < theirs else "NOT met")])  # fmt: skip

    def numpy_pi(p: int) -> float:
        k = np.arange(p + 1)
        return float((4.0 * (1 - 2 * (k & 1)) / (2 * k + 1)).sum())

    for exponent in (3, 5, 7):
        p = 10**exponent
        number = max(1, 10_000 // p)
        ours, theirs = _best_of_pair(partial(leibniz_pi, p), partial(numpy_pi, p), number)
        rows.append([f"C, processes = 1e{exponent}", f"{ours * 1e6:.1f}", "numpy one-liner",
                     f"{theirs * 1e6:.1f}", f"{ours / theirs:.2f}", ""])  # fmt: skip
    table("| method cost | ours (µs) | reference | reference (µs) | ratio | goal |", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter of the apps")
    parser.add_argument("--runs", type=int, default=10, help="cold starts of each app")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each hey run")
    args = parser.parse_args()
    cold_start(args.python, args.runs)
    latency_and_throughput(args.python, args.seconds)
    method_costs()
    deploy_times()
    from_zero()
    scaling()


if __name__ == "__main__":
    main()
