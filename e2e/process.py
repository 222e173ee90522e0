"""Process supervision for the local cluster: is a component still the program it was started
as, how much memory it holds, and stopping it by its PID (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Process:
    name: str
    pid: int
    executable: str  # what /proc/PID/cmdline names: tells a reused PID from ours
    log: str
    ready_seconds: float = 0.0
    rss_mib: float = 0.0


def alive(process: Process) -> bool:
    """True if ``process.pid`` still runs the program it was started as."""
    try:
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(os.fsencode(process.executable)) for part in cmdline if part)


def children(pid: int) -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def descendants(pid: int) -> list[int]:
    """PID and every process below it (dockerd's containerd, its shims and their containers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue += children(current)
    return found


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (dockerd's containerd, for one)."""
    return sum(rss_bytes(p) for p in [pid, *children(pid)]) / 2**20


def stop(process: Process, timeout: float = 15) -> None:
    if not alive(process):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(process):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)
        time.sleep(0.05)
    if alive(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, 0)


def mounts_below(root: Path) -> list[Path]:
    """The mount points at or below ``root``, in the order they were mounted."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [p for p in (Path(line.split()[4]) for line in lines) if p.is_relative_to(root)]


def unmount_below(root: Path) -> None:
    """Detach every mount below ``root``, innermost first."""
    for target in reversed(mounts_below(root)):
        subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=False)


def last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def running_with(marker: str, programs: tuple[str, ...]) -> list[tuple[int, str]]:
    """The processes of PROGRAMS (by the name of their executable) whose command line names
    MARKER: (pid, program)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        program = os.path.basename(os.fsdecode(argv[0]))
        if program in programs and any(marker in os.fsdecode(arg) for arg in argv[1:]):
            found.append((int(proc.name), program))
    return sorted(found)
