"""Memory of a process and its descendants, from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` alone."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (the worker processes)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += rss_bytes(current)
            pending += children(current)
        except OSError:
            continue
    return total
