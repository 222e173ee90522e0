"""Ports as the cluster takes them: a free one, or the one asked for if it is free; components
started and waited for until ready."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import psutil
import pytest

from e2e import context, process
from e2e.context import ClusterError, Context, check_port, free_port, port_from_env


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_port_is_handed_out_once_even_when_the_kernel_offers_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The components bind their ports only when they start: until then the kernel may offer
    a port handed out already to the next bind to port 0 (it gave etcd the gateway's once)."""
    first = free_port()
    offered = iter([first, first, 1])

    class Kernel(socket.socket):
        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", next(offered))

    monkeypatch.setattr(socket, "socket", Kernel)
    assert free_port() == 1


def test_a_port_in_use_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ClusterError, match=f"^gateway: port 127.0.0.1:{port} is in use$"):
            check_port("gateway", "127.0.0.1", port)
        monkeypatch.setenv("GATEWAY_PORT", str(port))
        with pytest.raises(ClusterError, match="is in use"):
            port_from_env("gateway", "GATEWAY_PORT")


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1"])
def test_a_port_that_is_no_port_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("METRICS_PORT", value)
    with pytest.raises(ClusterError, match=f"METRICS_PORT={value!r}: not a port number"):
        port_from_env("metrics", "METRICS_PORT")


def test_without_a_port_asked_for_one_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_PORT", raising=False)
    assert 1024 <= port_from_env("registry", "REGISTRY_PORT") <= 65535


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A context whose run directory and logs are this test's own."""
    monkeypatch.setattr(context, "STATE", tmp_path / "state")
    monkeypatch.setattr(context, "STATE_FILE", tmp_path / "state" / "state.json")
    monkeypatch.setattr(context, "LOGS", tmp_path)
    (tmp_path / "state").mkdir()
    return Context()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_started_component_is_recorded_once_ready(ctx: Context) -> None:
    answers = iter([False, False, True])
    ctx.start("sleeper", python("import time; time.sleep(30)"), lambda: next(answers))
    try:
        [started] = ctx.state.processes
        assert started.name == "sleeper"
        assert started.pid == ctx.children["sleeper"].pid
        assert ctx.children["sleeper"].poll() is None
        assert started.ready_seconds >= 0.1  # asked three times, with waits between
        # What `up` reports and `status` reads: the saved state carries the same ready time.
        saved = context.State.load()
        assert saved is not None
        assert [p.ready_seconds for p in saved.processes] == [started.ready_seconds]
        assert saved == ctx.state
    finally:
        ctx.children["sleeper"].kill()
        ctx.children["sleeper"].wait()


def test_a_component_that_exits_while_starting_is_named_with_its_last_line(ctx: Context) -> None:
    code = "import sys; print('starting'); print('bad flag: --x', flush=True); sys.exit(3)"
    with pytest.raises(ClusterError, match=r"^crasher exited with code 3 while starting: bad flag"):
        ctx.start("crasher", python(code), lambda: False)


def test_a_component_never_ready_times_out_and_is_still_recorded(ctx: Context) -> None:
    def refused() -> bool:
        raise ConnectionRefusedError  # an OSError: not ready yet, not a failure

    try:
        with pytest.raises(ClusterError, match=r"^slow was not ready within 0 s"):
            ctx.start("slow", python("import time; time.sleep(30)"), refused, timeout=0.3)
        # Recorded: `down` stops it.
        assert [p.name for p in ctx.state.processes] == ["slow"]
    finally:
        ctx.children["slow"].kill()
        ctx.children["slow"].wait()


def test_a_started_component_stays_known_when_the_system_clock_is_set(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded by its start in clock ticks since boot: the clock set 28 s forward (the boot
    time, and every create_time, move with it) leaves it the cluster's component."""
    try:
        ctx.start("first", python("import time; time.sleep(30)"), lambda: True)
        (recorded,) = ctx.state.processes
        assert recorded.start_ticks == process.start_ticks(ctx.children["first"].pid)
        booted = psutil.boot_time()
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: booted + 28.0)
        assert process.alive(recorded)
    finally:
        for child in ctx.children.values():
            child.kill()
            child.wait()


def test_a_restarted_component_keeps_its_place(ctx: Context) -> None:
    """A component started again after a fault stopped it (components stop in reverse order)."""
    sleep = python("import time; time.sleep(30)")
    try:
        ctx.start("first", sleep, lambda: True)
        ctx.start("second", sleep, lambda: True)
        ctx.children["first"].kill()
        ctx.children["first"].wait()
        ctx.start("first", sleep, lambda: True)
        assert [p.name for p in ctx.state.processes] == ["first", "second"]
        assert ctx.state.processes[0].pid == ctx.children["first"].pid
    finally:
        for child in ctx.children.values():
            child.kill()
            child.wait()
