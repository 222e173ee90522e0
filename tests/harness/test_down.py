"""`down` runs every step whichever fails, and tells each failure in one line with exit 1; a
failed `up` stops what it started and tells its own error first. What touches the machine is
faked: the network (`ip`), /proc/sys, kube-proxy's rules, mounts, cgroups, kubectl and ctr. The
cluster's processes are real children of the test, named as the components."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from e2e import cluster, context, images, netns, node, process, proxy, tools
from e2e.context import ClusterError, Context, State
from e2e.process import Process
from tests.utils import python_named

KILL = os.kill  # the real one: the tests fake os.kill for a pod's process
RUN_SUBPROCESS = subprocess.run
HOST_SYSCTLS = {"net/ipv4/ip_forward": "0", "net/bridge/bridge-nf-call-iptables": "0"}
COMPONENTS = ("etcd", "kube-apiserver", "dockerd", "containerd", "kubelet", "gateway-standin")
SERVICES = str(netns.SERVICE_NETWORK)
# The host's routes, as `ip -4 route show table all` prints them and as `ip -json` gives them:
# one of each type, none of them in the cluster's range.
ROUTES: list[tuple[str, dict[str, str]]] = [
    ("default via 192.0.2.1 dev eth0", {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"}),
    ("192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2",
     {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "prefsrc": "192.0.2.2"}),
    ("prohibit 10.1.0.0/16", {"type": "prohibit", "dst": "10.1.0.0/16"}),
    ("throw 10.2.0.0/16 table 100", {"type": "throw", "dst": "10.2.0.0/16", "table": "100"}),
    ("unreachable 10.3.0.0/16", {"type": "unreachable", "dst": "10.3.0.0/16"}),
    ("blackhole 10.4.0.0/16", {"type": "blackhole", "dst": "10.4.0.0/16"}),
    ("multicast 239.1.0.0/16 dev eth0 table local proto kernel",
     {"type": "multicast", "dst": "239.1.0.0/16", "dev": "eth0", "table": "local"}),
    ("local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1",
     {"type": "local", "dst": "127.0.0.1", "dev": "lo", "table": "local"}),
    ("broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.2",
     {"type": "broadcast", "dst": "192.0.2.255", "dev": "eth0", "table": "local"}),
]  # fmt: skip


@dataclass
class Network:
    """The machine's network as `ip` shows it and changes it."""

    bridges: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    routes: list[tuple[str, dict[str, str]]] = field(default_factory=lambda: list(ROUTES))

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out, code = "", 0
        match args:
            case ("netns", "list"):
                out = "".join(f"{name}\n" for name in sorted(self.namespaces))
            case ("netns", "del", name):
                code = self._remove(self.namespaces, name)
            case ("link", "add", name, "type", "bridge"):
                self.bridges.add(name)
            case ("link", "show", name):
                code = 0 if name in self.bridges else 1
            case ("link", "del", name):
                code = self._remove(self.bridges, name)
            case ("-json", "-4", "route", "show", "table", "all"):
                out = json.dumps([shown for _, shown in self.routes])
            case ("-4", "route", "show", "table", "all"):
                out = "".join(f"{line}\n" for line, _ in self.routes)
            case ("route", "replace", "blackhole", network):
                self.routes.append((f"blackhole {network}", {"type": "blackhole", "dst": network}))
            case ("route", "del", "blackhole", network):
                before = len(self.routes)
                self.routes = [r for r in self.routes if r[0] != f"blackhole {network}"]
                code = 0 if len(self.routes) < before else 2
            case ("-4", "-o", "addr", "show") | ("addr", "add", *_) | ("link", "set", *_):
                pass
            case _:
                raise AssertionError(f"not faked: ip {' '.join(args)}")
        if check and code:
            raise netns.NetworkError(f"ip {' '.join(args)}: failed")
        return subprocess.CompletedProcess(["ip", *args], code, out, "failed" if code else "")

    @staticmethod
    def _remove(names: set[str], name: str) -> int:
        if name not in names:
            return 1
        names.remove(name)
        return 0


@dataclass
class Machine:
    tmp: Path
    network: Network
    calls: list[str]  # the faked clean-ups that ran
    children: list[subprocess.Popen[str]] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # the children's, by pid
    pods: list[int] = field(default_factory=list)  # what node.pods() finds
    ctr: Callable[[list[str]], str] = lambda _: ""  # ctr's answer
    busy_mounts: set[Path] = field(default_factory=set)  # roots with a mount umount keeps

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    @property
    def run(self) -> Path:
        return self.tmp / "run"

    @property
    def cgroups(self) -> list[Path]:
        return [self.tmp / "cgroup" / hierarchy / "mfsa" for hierarchy in ("cpu", "memory")]

    def spawn(self, name: str) -> subprocess.Popen[str]:
        """A process named NAME, once it runs as that program."""
        child = python_named(
            name, "import time; print('running', flush=True); time.sleep(60)",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        self.children.append(child)
        self.names[child.pid] = name
        assert child.stdout is not None
        assert child.stdout.readline() == "running\n"
        return child

    def component(self, name: str) -> Process:
        """Component NAME, recorded as `up` records it."""
        pid = self.spawn(name).pid
        log = str(self.tmp / f"{name}.log")
        return Process(name, pid, name, log, start_ticks=process.start_ticks(pid))

    def sysctls(self) -> dict[str, str]:
        return {key: (self.tmp / "sys" / key).read_text() for key in HOST_SYSCTLS}

    def running(self) -> list[str]:
        """The test's processes still running (not zombies)."""
        return [self.names[c.pid] for c in self.children if _runs(c.pid)]

    def a_cluster_runs(self) -> None:
        """What `up` leaves: the components, the bridge with namespaces, the CRI's network
        namespace of a pod, the Services' blackhole route, the sysctls set, the kubelet's
        cgroups; and the state that records it."""
        self.network.bridges.add(netns.BRIDGE)
        self.network.namespaces |= {"mfsa-dns", "mfsa-traces", "cni-0123"}
        blackhole = {"type": "blackhole", "dst": SERVICES}
        self.network.routes.append((f"blackhole {SERVICES}", blackhole))
        for key in HOST_SYSCTLS:
            (self.tmp / "sys" / key).write_text("1")
        for path in self.cgroups:
            (path / "kubepods" / "pod1").mkdir(parents=True)
        self.run.mkdir()
        State(
            processes=[self.component(name) for name in COMPONENTS],
            docker_host=f"unix://{self.run}/docker.sock",
            bridge=True,
            sysctls=dict(HOST_SYSCTLS),
            blackhole=SERVICES,
        ).save()

    def assert_undone(self) -> None:
        """Every process stopped, the machine as it was before `up`: every step ran."""
        assert self.running() == []
        assert self.network == Network()  # no bridge, no namespace, the host's routes
        assert self.sysctls() == HOST_SYSCTLS
        assert [path for path in self.cgroups if path.exists()] == []
        assert not self.state.exists()
        assert not self.run.exists()
        assert "kube-proxy --cleanup" in self.calls
        assert f"unmount {self.run}" in self.calls


def _kill_if_there(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        KILL(pid, sig)


def _runs(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    network, calls = Network(), list[str]()
    here = Machine(tmp_path, network, calls)
    monkeypatch.setattr(cluster, "STATE", here.state)
    monkeypatch.setattr(cluster, "RUN", here.run)
    monkeypatch.setattr(cluster, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(context, "STATE", here.state)
    monkeypatch.setattr(context, "STATE_FILE", here.state / "state.json")
    monkeypatch.setattr(netns, "ip", network.ip)
    monkeypatch.setattr(netns, "require_root", lambda: None)
    monkeypatch.setattr(netns, "addresses_in_use", set)
    monkeypatch.setattr(netns, "_SYSCTL", tmp_path / "sys")
    monkeypatch.setattr(netns, "_ETC_NETNS", tmp_path / "etc-netns")
    for key, value in HOST_SYSCTLS.items():
        (tmp_path / "sys" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sys" / key).write_text(value)
    monkeypatch.setattr(proxy, "chains", list)
    monkeypatch.setattr(proxy, "cleanup", lambda keep: calls.append("kube-proxy --cleanup"))
    monkeypatch.setattr(images, "clean_node", lambda ctx: calls.append("docker rmi"))

    def unmount_below(root: Path) -> list[str]:
        calls.append(f"unmount {root}")
        return [f"{root}/x stays mounted: busy"] if root in here.busy_mounts else []

    monkeypatch.setattr(process, "unmount_below", unmount_below)
    monkeypatch.setattr(node, "_cgroups", lambda: here.cgroups)
    monkeypatch.setattr(node, "pods", lambda: list(here.pods))
    monkeypatch.setattr(cluster, "_preflight", lambda ctx: None)
    # kubectl answers (as it does to a running API server), and so does ctr: no containers.
    monkeypatch.setattr(tools, "BIN", tmp_path / "bin")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kubectl").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "kubectl").chmod(0o755)

    def run(argv: list[str], *args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if argv[0] == "ctr":
            return subprocess.CompletedProcess(argv, 0, here.ctr(argv), "")
        return RUN_SUBPROCESS(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    try:
        yield here
    finally:
        for child in here.children:
            if child.poll() is None:
                KILL(child.pid, signal.SIGKILL)
            child.communicate()


def down(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    """`python -m e2e.cluster down`: its exit code, its output lines and its error lines."""
    code = cluster.main(["down"])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_down_without_kubectl_still_undoes_everything_and_says_so(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    (machine.tmp / "bin" / "kubectl").unlink()  # tools.path raises ToolError
    machine.a_cluster_runs()
    code, out, err = down(capsys)
    assert err == ["cluster: drain the node: kubectl: not built; run make tools"]
    assert code == 1
    stopped = reversed(machine.names.items())  # in the reverse order of their start
    assert out == [f"stopped {name} (pid {pid})" for pid, name in stopped]
    machine.assert_undone()


def test_down_tells_each_mount_that_stays_and_still_undoes_everything(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.busy_mounts = {node.KUBELET_ROOT, machine.run}
    machine.a_cluster_runs()
    code, _, err = down(capsys)
    assert err == [
        f"cluster: the node: {node.KUBELET_ROOT}/x stays mounted: busy",
        f"cluster: mounts: {machine.run}/x stays mounted: busy",
    ]
    assert code == 1
    machine.assert_undone()


def test_stop_in_the_process_that_started_the_cluster_never_waits_on_a_child_it_missed(
    machine: Machine,
) -> None:
    """`stop` where `up` ran (the end-to-end tests' session): records that no longer match
    the running components (as a system clock set 28 s forward once made every create_time
    do, in CI) must not leave it waiting forever on a child that still runs: each is stopped
    by its handle and named."""
    machine.a_cluster_runs()
    state = State.load()
    assert state is not None
    for each in state.processes:
        assert each.start_ticks is not None
        each.start_ticks += 1
    state.save()
    stopper = cluster.Cluster()
    stopper.ctx.children = {machine.names[c.pid]: c for c in machine.children}  # type: ignore[misc]
    errors: list[cluster.StopError] = []

    def stop() -> None:
        try:
            stopper.stop(quiet=True)
        except cluster.StopError as error:
            errors.append(error)

    stopping = threading.Thread(target=stop, daemon=True)
    stopping.start()
    stopping.join(timeout=60)
    assert not stopping.is_alive(), "stop waits on a child it did not stop"
    (error,) = errors
    pids = {name: pid for pid, name in machine.names.items()}
    assert error.problems == [
        f"stop {name}: pid {pids[name]} ran on, not recognised by its record: stopped by its handle"
        for name in reversed(COMPONENTS)
    ]
    machine.assert_undone()


def test_stopping_a_component_says_whether_it_ran_and_start_brings_it_back(
    machine: Machine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m e2e.cluster stop zipkin` stops the recorded process and says so; a second
    `stop` says it is not running (it stopped nothing); `start` starts it again, recorded."""
    machine.a_cluster_runs()
    state = State.load()
    assert state is not None
    state.processes.append(zipkin := machine.component("zipkin"))
    state.save()

    def run_zipkin(ctx: Context) -> None:  # as Context.start records a restarted component
        names = [p.name for p in ctx.state.processes]
        ctx.state.processes[names.index("zipkin")] = machine.component("zipkin")
        ctx.state.save()

    monkeypatch.setitem(cluster.RESTARTABLE, "zipkin", run_zipkin)
    assert cluster.main(["stop", "zipkin"]) == 0
    assert cluster.main(["stop", "zipkin"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"stopped zipkin (pid {zipkin.pid})",
        f"zipkin is not running (pid {zipkin.pid})",
    ]
    assert "zipkin" not in machine.running()
    assert cluster.main(["start", "zipkin"]) == 0
    assert "zipkin" in machine.running()
    restarted = State.load()
    assert restarted is not None
    again = restarted.find("zipkin")
    assert again is not None
    assert again.pid != zipkin.pid
    assert capsys.readouterr().out == f"started zipkin (pid {again.pid})\n"


def test_down_when_ctr_does_not_answer_still_undoes_everything_and_says_so(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    def hangs(argv: list[str]) -> str:
        raise subprocess.TimeoutExpired(argv, 60)

    machine.ctr = hangs
    machine.a_cluster_runs()
    code, _, err = down(capsys)
    assert err == ["cluster: drain the node: ctr tasks list --quiet: no answer within 60 s"]
    assert code == 1
    machine.assert_undone()


def test_down_waits_for_the_pods_tasks_to_stop_not_for_their_containers_removal(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The kubelet stops a pod's containers (their tasks end, the sandbox's network is torn
    down) at once, and removes the stopped containers at its next garbage collection, up to a
    minute later: the drain waits for the first only."""
    asked: list[str] = []

    def answer(argv: list[str]) -> str:
        what = argv[argv.index("--namespace=k8s.io") + 1]
        asked.append(what)
        if what == "containers":
            return "sandbox\napp\n"  # stopped, listed until collected
        return "app\n" if asked.count("tasks") < 3 else ""  # running, then stopped

    machine.ctr = answer
    machine.a_cluster_runs()
    code, _, err = down(capsys)
    assert (code, err) == (0, [])
    assert asked.count("tasks") == 3
    machine.assert_undone()


@pytest.fixture
def pod(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> subprocess.Popen[str]:
    """A pod's process under a shim, in the kubelet's cgroups: a cgroup is busy (it cannot be
    removed) while the process runs, as the kernel has it."""
    child = machine.spawn("pause")
    machine.pods.append(child.pid)
    rmdir = Path.rmdir

    def busy_while_it_runs(path: Path) -> None:
        if path.is_relative_to(machine.tmp / "cgroup") and _runs(child.pid):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        rmdir(path)

    monkeypatch.setattr(Path, "rmdir", busy_while_it_runs)
    return child


def test_down_waits_for_a_pod_that_outlives_its_sigkill_before_removing_its_cgroups(
    machine: Machine,
    pod: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def kill(pid: int, sig: int) -> None:
        if pid == pod.pid and sig == signal.SIGKILL:  # it dies a moment later
            threading.Timer(0.3, _kill_if_there, (pid, sig)).start()
        else:
            KILL(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    machine.a_cluster_runs()
    code, _, err = down(capsys)
    assert (code, err) == (0, [])
    machine.assert_undone()


def test_down_tells_a_pod_that_stays_and_the_cgroups_it_holds(
    machine: Machine,
    pod: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def kill(pid: int, sig: int) -> None:
        if pid != pod.pid or sig != signal.SIGKILL:  # it never dies (stuck in the kernel)
            KILL(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(process, "KILL_TIMEOUT", 0.3)
    machine.a_cluster_runs()
    code, _, err = down(capsys)
    assert err == [
        f"cluster: the node: pod process {pod.pid} still runs 0.3 s after SIGKILL",
        *(f"cluster: the node: cgroup {path}/kubepods/pod1 stays: Device or resource busy"
          for path in machine.cgroups),
    ]  # fmt: skip
    assert code == 1
    assert machine.running() == ["pause"]
    # Everything else was undone.
    assert machine.network == Network()
    assert machine.sysctls() == HOST_SYSCTLS
    assert not machine.state.exists()
    assert not machine.run.exists()


def test_down_tells_a_sysctl_it_cannot_restore_and_restores_the_others(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.a_cluster_runs()
    forwarding = machine.tmp / "sys" / "net/ipv4/ip_forward"
    forwarding.unlink()
    forwarding.mkdir()  # not writable
    code, _, err = down(capsys)
    assert err == ["cluster: sysctls: /proc/sys/net/ipv4/ip_forward = 0: Is a directory"]
    assert code == 1
    assert (machine.tmp / "sys" / "net/bridge/bridge-nf-call-iptables").read_text() == "0"
    forwarding.rmdir()
    forwarding.write_text("0")
    machine.assert_undone()


def _kubelet_exits(machine: Machine) -> Callable[[Context], None]:
    """A start step that starts the kubelet, which exits."""

    def step(ctx: Context) -> None:
        ctx.state.processes.append(machine.component("kubelet"))
        ctx.state.save()
        raise ClusterError("kubelet exited with code 1 while starting: bad flag")

    return step


def test_a_failed_up_undoes_everything_and_tells_its_own_error_then_the_stops(
    machine: Machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a route of every type on the host; the stop after the failure fails too."""
    monkeypatch.setattr(cluster, "STEPS", (cluster._network, _kubelet_exits(machine)))
    (machine.tmp / "bin" / "kubectl").unlink()
    code = cluster.main(["up"])
    assert capsys.readouterr().err.splitlines() == [
        "cluster: kubelet exited with code 1 while starting: bad flag",
        "cluster: drain the node: kubectl: not built; run make tools",
    ]
    assert code == 1
    machine.assert_undone()


@pytest.mark.parametrize(
    ("route", "shown"),
    [
        ("prohibit 198.51.100.0/24", {"type": "prohibit", "dst": "198.51.100.0/24"}),
        ("throw 198.51.100.0/24 table 7",
         {"type": "throw", "dst": "198.51.100.0/24", "table": "7"}),
        ("unreachable 198.51.100.0/24", {"type": "unreachable", "dst": "198.51.100.0/24"}),
        ("local 198.51.100.0/24 dev lo table local",
         {"type": "local", "dst": "198.51.100.0/24", "dev": "lo", "table": "local"}),
        ("198.51.100.128/26 dev eth1", {"dst": "198.51.100.128/26", "dev": "eth1"}),
    ],
)  # fmt: skip
def test_up_refuses_a_services_range_routed_already_whatever_the_routes_type(
    machine: Machine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    route: str,
    shown: dict[str, str],
) -> None:
    monkeypatch.setattr(cluster, "STEPS", (cluster._network,))
    machine.network.routes.append((route, shown))
    code = cluster.main(["up"])
    described = f"{shown.get('type', 'unicast')} {shown['dst']} table {shown.get('table', 'main')}"
    assert capsys.readouterr().err.splitlines() == [
        f"cluster: network: {SERVICES} is already routed: {described}"
    ]
    assert code == 1
    machine.network.routes.remove((route, shown))
    machine.assert_undone()
