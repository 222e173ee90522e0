"""What the benchmarks read (hey's summary) and print (markdown tables)."""

from __future__ import annotations

import re
import statistics


def _figure(label: str, text: str) -> float:
    match = re.search(label + r":\s+([0-9.]+)", text)
    if match is None:
        raise RuntimeError(f"no {label} in this output:\n{text}")
    return float(match.group(1))


def requests_per_second(summary: str) -> float:
    """Requests/sec from the summary hey (or `faas load`) prints."""
    return _figure("Requests/sec", summary)


def table(header: str, rows: list[list[str]]) -> None:
    """Print a markdown table: ``header`` is its first line, every column after the first is
    right-aligned."""
    columns = header.count("|") - 1
    print(header)
    print("|---" + "|---:" * (columns - 1) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def median_rows(
    results: dict[str, list[float]], *baselines: str, scale: float = 1.0, digits: int = 0
) -> list[list[str]]:
    """One row a name: its median (times ``scale``) and that median's ratio to each of
    ``baselines``' medians."""
    medians = {name: statistics.median(values) for name, values in results.items()}
    return [
        [name, f"{median * scale:.{digits}f}",
         *(f"{median / medians[baseline]:.2f}" for baseline in baselines)]
        for name, median in medians.items()
    ]  # fmt: skip
