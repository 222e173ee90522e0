"""`python -m e2e.cluster up|down|status`: a Knative cluster on this machine.

The cluster is the ordered list of its components below (kind's actions): each is a function of
the shared context (e2e/context.py) that starts its processes, waits until they are ready and
records them. `up` runs the list, prints each process's time to ready and memory, writes
build/cluster/env and leaves them running; `down` stops each process by its PID in the reverse
order, after the clean-ups of the components that leave something behind, and removes the run
directory. `stop registry` and `start registry` take the registry away and bring it back (a
fault for the end-to-end tests).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lightkube import ApiError

from e2e import (
    controlplane,
    dns,
    gateway,
    images,
    knative,
    metrics,
    netns,
    node,
    process,
    proxy,
    tools,
    traces,
)
from e2e.context import (
    DOCKER_CONFIG,
    ENV_FILE,
    KUBECONFIG,
    LOGS,
    ROOT,
    RUN,
    STATE,
    ClusterError,
    Context,
    State,
    docker_client,
    port_from_env,
    require,
)

Step = Callable[[Context], None]


def _network(ctx: Context) -> None:
    """The node's bridge; the blackhole route for the Services' range, before anything can
    send to it; and the sysctls that forwarding to cluster IPs needs (the host's values kept,
    to restore)."""
    ctx.state.kube_chains = proxy.chains()
    try:
        netns.create_bridge()
        ctx.state.bridge = True
        ctx.state.save()
        if netns.blackhole_services():  # a route the host had stays
            ctx.state.blackhole = str(netns.SERVICE_NETWORK)
        ctx.state.sysctls = netns.set_sysctls(netns.SYSCTLS)
    except netns.NetworkError as error:
        raise ClusterError(f"network: {error}") from None
    finally:
        ctx.state.save()


def _env_file(ctx: Context) -> None:
    values = Cluster.env_of(ctx.state)
    ENV_FILE.write_text("export " + " ".join(f"{k}={v}" for k, v in values.items()) + "\n")


# The cluster, in the order it starts. Adding a component is a module and a line here.
STEPS: tuple[Step, ...] = (
    _network,
    traces.spawn_zipkin,  # a JVM: it starts while the others do, and is waited for below
    controlplane.certificates,
    controlplane.etcd,
    controlplane.apiserver,
    controlplane.controller_manager,
    controlplane.scheduler,
    images.dockerd,
    images.registry,
    images.buildkit,
    images.node_images,
    node.containerd,
    node.kubelet,  # the node registers before kube-proxy, which runs for that node
    proxy.start,
    dns.start,
    traces.start,
    knative.install,
    knative.deploy,
    gateway.start,
    metrics.kube_state_metrics,
    metrics.store,
    _env_file,
)
# What `stop NAME` and `start NAME` act on: a component whose start step can run again alone.
RESTARTABLE: dict[str, Step] = {
    "registry": images.registry,
    "kube-proxy": proxy.run,
    "zipkin": traces.run_zipkin,
}


# The node's programs, which name RUN: the node's paths, bridge and Service routes are one per
# machine, so a cluster started from another checkout of the project holds them.
NODE_PROGRAMS = ("kubelet", "dockerd", "buildkitd")


def another_cluster(state: State) -> str | None:
    """A node program running on this machine that is not STATE's: another checkout's cluster."""
    ours = {each.pid for each in state.processes}
    for pid, program in process.running_with(str(RUN), NODE_PROGRAMS):
        if pid not in ours:
            return f"{program} (pid {pid})"
    return None


def _refuse_another(state: State) -> None:
    if (other := another_cluster(state)) is not None:
        raise ClusterError(
            f"another local cluster is running on this machine ({other} uses {RUN}): "
            "stop it with make cluster-down in its checkout"
        )


def _preflight(ctx: Context) -> None:
    netns.require_root()
    for name in tools.CLUSTER_TOOLS:
        try:
            tools.path(name)
        except tools.ToolError as error:
            raise ClusterError(str(error)) from None
    require("dockerd", "docker.io")
    require("docker-registry", "docker-registry")
    require("ip", "iproute2")
    require("runc", "runc")  # BuildKit's OCI worker runs each build step with it
    require("iptables", "iptables")  # kube-proxy's rules
    require("containerd", "containerd")  # the node's container runtime (with docker.io)
    require("ctr", "containerd")
    require("java", "openjdk-17-jre-headless")  # Zipkin's server
    if not (node.CNI_BIN / "bridge").exists():
        raise ClusterError(f"{node.CNI_BIN}/bridge: not found; install containernetworking-plugins")
    docker_client()
    ctx.state.ports = {
        "gateway": port_from_env("gateway", "GATEWAY_PORT"),
        "registry": port_from_env("registry", "REGISTRY_PORT"),
        "metrics": port_from_env("metrics", "METRICS_PORT"),
    }


class StopError(ClusterError):
    """What `down` could not undo (everything else was): one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


class Cluster:
    """The local control plane: ``start()`` brings it up, ``stop()`` takes it down."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.ctx = Context(out)

    @staticmethod
    def running() -> bool:
        state = State.load()
        return bool(state and state.processes and all(process.alive(p) for p in state.processes))

    @staticmethod
    def env_of(state: State) -> dict[str, str]:
        """What a client of the cluster needs (build/cluster/env)."""
        return {
            "KUBECONFIG": str(KUBECONFIG),
            "DOCKER_HOST": state.docker_host,
            "DOCKER_CONFIG": str(DOCKER_CONFIG),
            "REGISTRY": images.registry_address(state),
            "GATEWAY": f"127.0.0.1:{state.ports['gateway']}",
            "METRICS": metrics.url(state),
            "TRACES": traces.URL,
        }

    @staticmethod
    def env() -> dict[str, str]:
        """The running cluster's env."""
        state = State.load()
        if state is None or not ENV_FILE.exists():
            raise ClusterError("no local cluster is running: run make cluster-up")
        return Cluster.env_of(state)

    @classmethod
    def attach(cls, out: Callable[[str], None] = print) -> Cluster:
        """The cluster that `up` started (in this process or another), to act on a component."""
        state = State.load()
        if state is None or not state.processes:
            raise ClusterError("no local cluster is running: run make cluster-up")
        cluster = cls(out)
        cluster.ctx.state = state
        return cluster

    def _restartable(self, name: str) -> process.Process:
        found = self.ctx.state.find(name)
        if name not in RESTARTABLE or found is None:
            raise ClusterError(f"{name}: not a component that can be stopped and started")
        return found

    def stop_component(self, name: str) -> None:
        """Stop component NAME (the registry) by its PID, leaving the rest running: a fault the
        end-to-end tests inject. ``start_component`` starts it again."""
        stopped = self._restartable(name)
        if not process.alive(stopped):
            self.ctx.out(f"{name} is not running (pid {stopped.pid})")
            return
        process.stop(stopped)
        self.ctx.out(f"stopped {name} (pid {stopped.pid})")

    def start_component(self, name: str) -> None:
        """Start component NAME again as `up` started it, on its port and with its storage."""
        current = self._restartable(name)
        if process.alive(current):
            self.ctx.out(f"{name} is running (pid {current.pid})")
            return
        RESTARTABLE[name](self.ctx)
        self.ctx.out(f"started {name} (pid {self._restartable(name).pid})")

    def start(self) -> None:
        """Start every component in order; on any failure stop what started, then raise that
        failure (with what the stop could not undo as its notes)."""
        if Cluster.running():
            raise ClusterError("a local cluster is already running (make cluster-down first)")
        self.ctx.state = State.load() or State()
        _refuse_another(self.ctx.state)
        self.stop(quiet=True)  # what a cluster that died or was killed left behind
        _preflight(self.ctx)
        STATE.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(LOGS, ignore_errors=True)
        LOGS.mkdir(parents=True)
        started = time.monotonic()
        try:
            for step in STEPS:
                step(self.ctx)
        except BaseException as error:
            try:
                self.stop(quiet=True)
            except StopError as left:
                for problem in left.problems:
                    error.add_note(problem)
            raise
        for each in self.ctx.state.processes:
            each.rss_mib = process.rss_mib(each.pid)
        self.ctx.state.save()
        self._report(time.monotonic() - started)

    def stop(self, *, quiet: bool = False) -> None:
        """Stop every process by its PID (the stand-ins first), then undo what the cluster did
        to the machine and remove the state. Every step runs, whichever failed before it;
        StopError then names each that failed."""
        # The state on disk: a component restarted by another process has its new PID there.
        ctx = self.ctx
        ctx.state = State.load() or ctx.state
        problems: list[str] = []

        def attempt(what: str, action: Callable[[], list[str] | None]) -> None:
            try:
                problems.extend(f"{what}: {left}" for left in action() or [])
            except Exception as error:  # every step runs: each failure is told at the end
                problems.append(f"{what}: {' '.join(str(error).split()) or type(error).__name__}")

        for each in reversed(ctx.state.processes):
            if each.name == "kubelet" and process.alive(each):
                attempt("drain the node", functools.partial(node.drain, ctx))
            if each.name == "dockerd" and process.alive(each) and ctx.state.docker_host:
                attempt("the node's images", functools.partial(images.clean_node, ctx))
            before = len(problems)
            attempt(f"stop {each.name}", functools.partial(process.stop, each))
            child = ctx.children.pop(each.name, None)
            if child is not None and len(problems) == before:
                attempt(f"stop {each.name}", functools.partial(_reap, each, child))
            if len(problems) == before and not quiet:
                ctx.out(f"stopped {each.name} (pid {each.pid})")
        if ctx.state.bridge:  # a cluster of ours ran: what its node and kube-proxy left
            attempt("the node", functools.partial(node.clean, ctx))
            attempt("kube-proxy's rules", functools.partial(proxy.cleanup, ctx.state.kube_chains))
        owned: list[str] = []
        attempt("network namespaces", lambda: owned.extend(netns.owned()))
        for name in owned:
            attempt(f"network namespace {name}", functools.partial(netns.delete, name))
        attempt("the bridge", netns.delete_bridge)
        if ctx.state.blackhole:
            blackhole = ctx.state.blackhole
            attempt("the blackhole route", functools.partial(netns.remove_blackhole, blackhole))
        attempt("sysctls", functools.partial(netns.restore_sysctls, ctx.state.sysctls))
        attempt("the state", functools.partial(_remove_tree, STATE))
        # dockerd bind-mounts the host's network namespace at <exec-root>/netns/default for the
        # first host-network container and leaves it mounted when it exits.
        attempt("mounts", functools.partial(process.unmount_below, RUN))
        attempt("the run directory", functools.partial(_remove_tree, RUN))
        ctx.state = State()
        ctx.close()
        if problems:
            raise StopError(problems)

    def _report(self, seconds: float) -> None:
        out, processes = self.ctx.out, self.ctx.state.processes
        out(f"{'component':<26}{'ready after':>10}  {'RSS':>9}")
        for each in processes:
            out(f"{each.name:<26}{each.ready_seconds:>8.2f} s {each.rss_mib:>7.0f} MiB")
        pods = node.pods()  # Knative's components, under containerd's shims
        pods_mib = sum(process.rss_bytes(pid) for pid in pods) / 2**20
        out(f"{f'pods ({len(pods)} processes)':<26}{'':>10} {pods_mib:>7.0f} MiB")
        total = sum(p.rss_mib for p in processes) + pods_mib
        out(f"{'all':<26}{seconds:>8.2f} s {total:>7.0f} MiB")
        out(f"ready: source {ENV_FILE.relative_to(ROOT)}")


def _reap(each: process.Process, child: subprocess.Popen[bytes]) -> list[str]:
    """A component this process started, once ``process.stop`` is done with it: its exit
    recorded (no zombie, no warning). If it still runs, its record did not match it: stopped
    as ``process.stop`` stops, by its start as read now (an unreaped child's PID is its own),
    and said, rather than waited for."""
    try:
        child.wait(timeout=1)
        return []
    except subprocess.TimeoutExpired:
        process.stop(dataclasses.replace(each, start_ticks=process.start_ticks(child.pid)))
        child.wait(timeout=process.KILL_TIMEOUT)  # reaped by process.stop: recorded at once
        return [f"pid {child.pid} ran on, not recognised by its record: stopped by its handle"]


@contextlib.contextmanager
def running_cluster(out: Callable[[str], None] = print) -> Iterator[dict[str, str]]:
    """The running cluster's env, or a new cluster for the duration of the block."""
    if Cluster.running():
        yield Cluster.env()
        return
    cluster = Cluster(out)
    cluster.start()
    try:
        yield Cluster.env()
    finally:
        cluster.stop(quiet=True)


def _up() -> int:
    if Cluster.running():
        print(f"a local cluster is already running: source {ENV_FILE.relative_to(ROOT)}")
        return 0
    Cluster().start()
    return 0


def _down() -> int:
    state = State.load()
    _refuse_another(state or State())
    if state is None and not netns.owned():
        print("no local cluster is running")
        return 0
    Cluster().stop()
    return 0


def _status() -> int:
    state = State.load()
    if state is None:
        print("no local cluster is running")
        return 1
    for each in state.processes:
        status = f"{process.rss_mib(each.pid):.0f} MiB" if process.alive(each) else "NOT RUNNING"
        print(f"{each.name:<26} pid {each.pid:<8} {status}")
    if Cluster.running():
        print(f"{'metrics store':<26} {metrics.url(state)}")
        print(f"{'trace store':<26} {traces.URL}")
    return 0 if Cluster.running() else 1


def _component(action: str, name: str) -> int:
    cluster = Cluster.attach()
    if action == "stop":
        cluster.stop_component(name)
    else:
        cluster.start_component(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    commands = {"up": _up, "down": _down, "status": _status}
    parser = argparse.ArgumentParser(
        prog="python -m e2e.cluster", description="The local Knative control plane."
    )
    parser.add_argument("command", choices=(*commands, "stop", "start"))
    parser.add_argument(
        "component", nargs="?", choices=tuple(RESTARTABLE), help="with stop or start: the component"
    )
    args = parser.parse_args(argv)
    if (args.command in {"stop", "start"}) != (args.component is not None):
        parser.error("stop and start take a component; up, down and status take none")
    try:
        if args.component is not None:
            return _component(args.command, args.component)
        return commands[args.command]()
    except (ClusterError, netns.NetworkError, tools.ToolError, TimeoutError) as error:
        _tell(error.problems if isinstance(error, StopError) else [str(error)], error)
        return 1
    except ApiError as error:  # the API server refused what a component applied
        _tell([f"the API server refused a request: {error.status.message}"], error)
        return 1
    except KeyboardInterrupt as interrupt:
        told = "interrupted" if _notes(interrupt) else "interrupted; everything started was stopped"
        _tell([told], interrupt)
        return 130


def _notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


def _tell(lines: list[str], error: BaseException) -> None:
    """LINES, then what the stop after a failed start could not undo: one line each."""
    for line in [*lines, *_notes(error)]:
        print(f"cluster: {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
