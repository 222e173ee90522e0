"""Process supervision for the local cluster: is a component still the process it was started
as, how much memory it holds, and stopping it by its PID (SIGTERM, then SIGKILL). psutil reads
/proc; e2e/poll.py does the waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from e2e.poll import until

KILL_TIMEOUT = 10.0  # after SIGKILL: more than this, and the process is reported as staying


@dataclass
class Process:
    name: str
    pid: int
    executable: str  # the program's name, as its command line shows it
    log: str
    ready_seconds: float = 0.0
    rss_mib: float = 0.0
    # When it started, in clock ticks since boot: tells a reused PID from ours, whatever the
    # system clock does meanwhile. None: a state file written before it was recorded (such a
    # file's create_time, seconds since the epoch, moved with the clock: it is not read), and
    # the command line is matched instead.
    start_ticks: int | None = None


def start_ticks(pid: int) -> int | None:
    """When PID started, in clock ticks since boot (the 22nd field of /proc/PID/stat, proc(5)),
    or None if there is no such process. psutil's create_time adds the boot time, which the
    kernel derives from the wall clock: a clock set by a second moves it (psutil's own
    identity check uses these ticks, but not through its public API)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])  # fields from the 3rd, after comm


def alive(process: Process) -> bool:
    """True if ``process.pid`` is still the process that was started (not a zombie)."""
    try:
        found = psutil.Process(process.pid)
        if found.status() == psutil.STATUS_ZOMBIE:
            return False
        if process.start_ticks is not None:
            return start_ticks(process.pid) == process.start_ticks
        argv = found.cmdline()
        if not argv:  # it exits: its memory is gone, its name (15 characters) stays till reaped
            return bool(found.name() == process.executable[:15])
        return any(
            part == process.executable or os.path.basename(part) == process.executable
            for part in argv
        )
    except psutil.Error:
        return False


def children(pid: int) -> list[int]:
    with contextlib.suppress(psutil.Error):
        return [child.pid for child in psutil.Process(pid).children()]
    return []


def descendants(pid: int) -> list[int]:
    """PID and every process below it (dockerd's containerd, its shims and their containers)."""
    with contextlib.suppress(psutil.Error):
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    return [pid]


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_info().rss)
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (dockerd's containerd, for one)."""
    return sum(rss_bytes(p) for p in [pid, *children(pid)]) / 2**20


def _gone(process: Process) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)  # reaped if it is our child
    return not alive(process)


def _signal(process: Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)


def stop(process: Process, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it still runs after TIMEOUT; returns once it is gone.
    TimeoutError if it outlives its SIGKILL by KILL_TIMEOUT."""
    if not alive(process):
        return
    _signal(process, signal.SIGTERM)
    try:
        until(lambda: _gone(process), timeout=timeout, what="exit on SIGTERM", cap=0.25)
    except TimeoutError:
        _signal(process, signal.SIGKILL)
        until(lambda: _gone(process), timeout=KILL_TIMEOUT, cap=0.25,
              what=f"{process.name} (pid {process.pid}) exits on SIGKILL")  # fmt: skip


def mounts_below(root: Path) -> list[Path]:
    """The mount points at or below ``root``, in the order they were mounted."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [p for p in (Path(line.split()[4]) for line in lines) if p.is_relative_to(root)]


def unmount_below(root: Path) -> list[str]:
    """Detach every mount below ``root``, innermost first. Returns a line for each mount that
    stays, with what umount said."""
    said = {}
    for target in reversed(mounts_below(root)):
        result = subprocess.run(["umount", "--lazy", str(target)], capture_output=True,
                                text=True, check=False)  # fmt: skip
        if result.returncode != 0:
            said[target] = " ".join(result.stderr.split()) or f"exit {result.returncode}"
    return [f"{target} stays mounted: {said.get(target, 'umount ran')}"
            for target in mounts_below(root)]  # fmt: skip


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
    for each in psutil.process_iter(["cmdline"]):
        argv: list[str] = each.info["cmdline"] or []
        program = os.path.basename(argv[0]) if argv else ""
        if program in programs and any(marker in arg for arg in argv[1:]):
            found.append((each.pid, program))
    return sorted(found)
