"""The load tool's maximum requests/sec against a trivial endpoint, as a ratio to hey.

    python -m benchmarks.load [--requests 20000] [--rounds 3]

Both clients load /healthz of one running service with 11 concurrent workers (the original's
-c 11), alternating, in the same run; the table gives the medians. Needs Debian's `hey` on PATH
for the baseline.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from benchmarks.output import median_rows, requests_per_second, table
from benchmarks.service_process import running_service

CONCURRENCY = 11


def _rps(command: list[str]) -> float:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return requests_per_second(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    hey = shutil.which("hey")
    if hey is None:
        print("hey is not installed (Debian: apt-get install hey); no baseline to compare with")
        return
    n, c = str(args.requests), str(CONCURRENCY)
    results: dict[str, list[float]] = {"faas load": [], "hey": []}
    with running_service() as service:
        target = f"{service.url}/healthz"
        for _ in range(args.rounds):
            results["hey"].append(_rps([hey, "-n", n, "-c", c, target]))
            results["faas load"].append(
                _rps([sys.executable, "-m", "ops.cli", "load", "-n", n, "-c", c, target])
            )
    table(
        f"| load client, -c {CONCURRENCY}, GET /healthz | median req/s | ratio to hey |",
        median_rows(results, "hey"),
    )


if __name__ == "__main__":
    main()
