"""e2e/process.py: a component is the process that was started (a reused PID is not), and
stopping it ends it, or says it could not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from e2e import context, process
from e2e.process import Process
from tests.utils import python_named

KILL = os.kill


def _child(name: str, code: str = "") -> subprocess.Popen[str]:
    """A process named NAME (its argv[0]) running CODE, then sleeping; once it runs."""
    code = f"{code}\nimport time; print('running', flush=True); time.sleep(60)"
    child = python_named(name, code, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == "running\n"
    return child


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            KILL(child.pid, signal.SIGKILL)
        child.communicate()


def test_a_pid_is_ours_while_it_is_the_process_started_then(
    children: list[subprocess.Popen[str]],
) -> None:
    children.append(child := _child("kubelet"))
    started = process.start_ticks(child.pid)
    assert started is not None
    assert process.alive(Process("kubelet", child.pid, "kubelet", "log", start_ticks=started))
    # The same PID, the same program, but started at another time: a reused PID.
    reused = Process("kubelet", child.pid, "kubelet", "log", start_ticks=started - 1)
    assert not process.alive(reused)
    child.kill()
    child.wait()
    assert process.start_ticks(child.pid) is None
    assert not process.alive(Process("kubelet", child.pid, "kubelet", "log", start_ticks=started))


def test_a_pid_stays_ours_when_the_system_clock_is_set(
    children: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock set 28 s forward while the cluster ran (as seen in a CI run): the kernel's
    boot time moves with it, and so does every process's create_time, not its start ticks."""
    children.append(child := _child("kubelet"))
    ours = Process(
        "kubelet", child.pid, "kubelet", "log", start_ticks=process.start_ticks(child.pid)
    )
    created, booted = psutil.Process(child.pid).create_time(), psutil.boot_time()
    monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: booted + 28.0)
    assert psutil.Process(child.pid).create_time() - created > 27  # as the kernel would have it
    assert process.alive(ours)


def test_a_state_file_without_start_ticks_loads_and_matches_the_program_exactly(
    children: list[subprocess.Popen[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State files written before start ticks were recorded, with no start time or with
    psutil's create_time (which a clock set since has moved: not read): the command line
    decides."""
    children.append(child := _child("kubelet"))
    monkeypatch.setattr(context, "STATE_FILE", tmp_path / "state.json")
    old = {"name": "kubelet", "pid": child.pid, "log": "kubelet.log", "ready_seconds": 1.5}
    moved = psutil.Process(child.pid).create_time() - 28.0
    (tmp_path / "state.json").write_text(json.dumps({"processes": [
        {**old, "executable": "kubelet"}, {**old, "name": "other", "executable": "let"},
        {**old, "executable": "kubelet", "create_time": moved},
    ]}))  # fmt: skip
    state = context.State.load()
    assert state is not None
    ours, other, recorded_then = state.processes
    assert (ours.start_ticks, recorded_then.start_ticks) == (None, None)
    assert process.alive(ours)
    assert process.alive(recorded_then)
    assert not process.alive(other)  # "let" is not the program "kubelet"


def test_stop_kills_a_process_that_ignores_sigterm(
    children: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "KILL_TIMEOUT", 2.0)
    children.append(child := _child("etcd", "import signal; signal.signal(15, signal.SIG_IGN)"))
    etcd = Process("etcd", child.pid, "etcd", "log", start_ticks=process.start_ticks(child.pid))
    started = time.monotonic()
    process.stop(etcd, timeout=0.3)
    assert not process.alive(etcd)
    assert child.wait() == 0  # reaped by stop: the status is gone
    assert time.monotonic() - started < 2


def test_stop_tells_a_process_that_outlives_its_sigkill(
    children: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    children.append(child := _child("etcd"))
    etcd = Process("etcd", child.pid, "etcd", "log", start_ticks=process.start_ticks(child.pid))

    def kill(pid: int, sig: int) -> None:
        if pid != child.pid or sig not in (signal.SIGTERM, signal.SIGKILL):
            KILL(pid, sig)  # the signals to ETCD are lost: as in the kernel's uninterruptible sleep

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(process, "KILL_TIMEOUT", 0.3)
    with pytest.raises(TimeoutError, match=rf"^not within 0.3 s: etcd \(pid {child.pid}\) exits"):
        process.stop(etcd, timeout=0.2)
    assert process.alive(etcd)


def test_descendants_are_the_whole_tree_and_their_memory_is_counted(
    children: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """What node.pods() and benchmarks/scaling.py count (a guard for psutil's use)."""
    pid_file = tmp_path / "grandchild"
    # The grandchild is running (past its interpreter's start, its memory settled) before the
    # child says it runs.
    spawn = (
        f"import pathlib, subprocess; grandchild = subprocess.Popen([{sys.executable!r}, '-c', "
        "'import time; print(1, flush=True); time.sleep(60)'], stdout=subprocess.PIPE); "
        "grandchild.stdout.readline(); "
        f"pathlib.Path({str(pid_file)!r}).write_text(str(grandchild.pid))"
    )
    children.append(child := _child("dockerd", spawn))
    grandchild = int(pid_file.read_text())
    try:
        assert process.descendants(child.pid) == [child.pid, grandchild]
        assert process.children(child.pid) == [grandchild]
        assert process.rss_bytes(child.pid) > 2**20
        both = (process.rss_bytes(child.pid) + process.rss_bytes(grandchild)) / 2**20
        assert process.rss_mib(child.pid) == pytest.approx(both, rel=0.2)
    finally:
        KILL(grandchild, signal.SIGKILL)
    assert process.rss_bytes(2**22 + 1) == 0  # no such process


def test_unmount_below_detaches_innermost_first_and_tells_what_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = Path("/run/x")
    mounted = [root / "a", root / "a" / "b", root / "c"]
    asked: list[list[str]] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        asked.append(argv)
        if argv[-1] == str(root / "c"):
            return subprocess.CompletedProcess(
                argv, 32, "", f"umount: {argv[-1]}: target is busy.\n"
            )
        mounted.remove(Path(argv[-1]))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(process, "mounts_below", lambda below: list(mounted))
    monkeypatch.setattr(subprocess, "run", run)
    assert process.unmount_below(root) == [
        f"{root}/c stays mounted: umount: {root}/c: target is busy."
    ]
    assert [argv[-1] for argv in asked] == [f"{root}/c", f"{root}/a/b", f"{root}/a"]
    assert {tuple(argv[:2]) for argv in asked} == {("umount", "--lazy")}
