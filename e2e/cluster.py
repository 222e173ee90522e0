"""`python -m e2e.cluster up|down|status`: a Knative cluster on this machine.

One object owns every process, as controller-runtime's envtest does: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler from Kubernetes; Knative Serving's webhook,
controller, autoscaler and activator (each in a network namespace of its own, as a pod would be);
dockerd, a registry and BuildKit's daemon (the buildx builder the docker-build provider uses); and
two stand-ins for what cannot run here, the kubelet (e2e/kubelet.py) and the Istio gateway's Envoy
(e2e/gateway.py). `up` starts them in order, waits until each is ready, prints its time to ready
and memory, writes build/cluster/env and leaves them running; `down` stops each by its PID and
removes the state. `stop registry` and `start registry` take the registry away and bring it back
(a fault for the end-to-end tests).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.core_v1 import Endpoints, Node, Service

from e2e import knative, netns, pki, probe, tools

ROOT = tools.ROOT
STATE = ROOT / "build" / "cluster"
LOGS = ROOT / "build" / "cluster-logs"
DOCKER_DATA = ROOT / "build" / "docker"  # the node's image store: kept across clusters
BUILDKIT_DATA = ROOT / "build" / "buildkit"  # BuildKit's cache: kept across clusters
DOCKER_CONFIG = STATE / "docker-config"  # the docker and buildx clients' configuration
BUILDER = "local"  # the buildx builder: BuildKit's daemon, the current builder in DOCKER_CONFIG
RUN = Path("/run/mfsa")  # sockets: a short path (unix socket paths are limited to 108 bytes)
ENV_FILE = STATE / "env"
STATE_FILE = STATE / "state.json"

SERVICE_CIDR = "10.96.0.0/24"  # cluster IPs: allocated, never routed (there is no kube-proxy)
DOMAIN = "example.com"  # config-domain: routes are NAME.NAMESPACE.example.com
NODE_NAME = "node-1"
FIELD_MANAGER = "mfsa-cluster"
POD_LABEL = "mfsa.pod.uid"  # the kubelet stand-in's label on every container it runs
PAUSE_IMAGE = "mfsa/pause:local"

# Knative's components, each as its Deployment in config/core/deployments describes it, in a
# network namespace of its own at a fixed address (the pods' range starts at .32).
KNATIVE_COMPONENTS = {"webhook": 5, "controller": 2, "autoscaler": 3, "activator": 4}
START_TIMEOUT = 120.0
RESTARTABLE = ("registry",)  # what `stop NAME` and `start NAME` act on


class ClusterError(RuntimeError):
    """The local control plane could not start, or is not running."""


@dataclass
class Process:
    name: str
    pid: int
    executable: str
    log: str
    ready_seconds: float = 0.0
    rss_mib: float = 0.0


@dataclass
class State:
    processes: list[Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    docker_host: str = ""
    bridge: bool = False

    def save(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls) -> State | None:
        try:
            raw = json.loads(STATE_FILE.read_text())
        except (OSError, ValueError):
            return None
        state = cls(**{k: v for k, v in raw.items() if k != "processes"})
        state.processes = [Process(**p) for p in raw.get("processes", [])]
        return state


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_port(name: str, host: str, port: int) -> int:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise ClusterError(f"{name}: port {host}:{port} is in use") from None
    return port


def _port_from_env(name: str, variable: str) -> int:
    value = os.environ.get(variable, "")
    if not value:
        return free_port()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ClusterError(f"{variable}={value!r}: not a port number (1 to 65535)")
    return _check_port(name, "127.0.0.1", int(value))


def _alive(process: Process) -> bool:
    """True if ``process.pid`` still runs the program it was started as."""
    try:
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(os.fsencode(process.executable)) for part in cmdline if part)


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (dockerd's containerd, for one)."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def _stop_pid(process: Process, timeout: float = 15) -> None:
    if not _alive(process):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(process):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, 0)


def mounts_below(root: Path) -> list[Path]:
    """The mount points at or below ``root``, in the order they were mounted."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [p for p in (Path(line.split()[4]) for line in lines) if p.is_relative_to(root)]


def _unmount_below(root: Path) -> None:
    """Detach every mount below ``root``, innermost first. dockerd bind-mounts the host's network
    namespace at <exec-root>/netns/default for the first host-network container and leaves it
    mounted when it exits."""
    for target in reversed(mounts_below(root)):
        subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=False)


def docker_client() -> str:
    """Debian's docker client (it builds with BuildKit), else whichever is on PATH."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        raise ClusterError("docker: not found; install docker.io")
    return found


def _require(command: str, package: str) -> str:
    found = shutil.which(command)
    if found is None:
        raise ClusterError(f"{command}: not found; install {package}")
    return found


def kubeconfig_text(server: str, ca: Path, user: dict[str, str]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
            "current-context": "local",
        }
    )


class Cluster:
    """The local control plane: ``start()`` brings it up, ``stop()`` takes it down."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.state = State()
        self.pki = STATE / "pki"
        self.kubeconfig = STATE / "kubeconfig"
        self._client: Client | None = None
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- public contract -------------------------------------------------------------------------

    @staticmethod
    def running() -> bool:
        state = State.load()
        return bool(state and state.processes and all(_alive(p) for p in state.processes))

    @staticmethod
    def env() -> dict[str, str]:
        """KUBECONFIG, DOCKER_HOST, DOCKER_CONFIG, REGISTRY and GATEWAY of the running cluster."""
        state = State.load()
        if state is None or not ENV_FILE.exists():
            raise ClusterError("no local cluster is running: run make cluster-up")
        return {
            "KUBECONFIG": str(STATE / "kubeconfig"),
            "DOCKER_HOST": state.docker_host,
            "DOCKER_CONFIG": str(DOCKER_CONFIG),
            "REGISTRY": f"127.0.0.1:{state.ports['registry']}",
            "GATEWAY": f"127.0.0.1:{state.ports['gateway']}",
        }

    @classmethod
    def attach(cls, out: Callable[[str], None] = print) -> Cluster:
        """The cluster that `up` started (in this process or another), to act on a component."""
        state = State.load()
        if state is None or not state.processes:
            raise ClusterError("no local cluster is running: run make cluster-up")
        cluster = cls(out)
        cluster.state = state
        return cluster

    def stop_component(self, name: str) -> None:
        """Stop component NAME (the registry) by its PID, leaving the rest running: a fault the
        end-to-end tests inject. ``start_component`` starts it again."""
        process = next((p for p in self.state.processes if p.name == name), None)
        if name not in RESTARTABLE or process is None:
            raise ClusterError(f"{name}: not a component that can be stopped and started")
        _stop_pid(process)
        self.out(f"stopped {name} (pid {process.pid})")

    def start_component(self, name: str) -> None:
        """Start component NAME again as `up` started it, on its port and with its storage."""
        process = next((p for p in self.state.processes if p.name == name), None)
        if name not in RESTARTABLE or process is None:
            raise ClusterError(f"{name}: not a component that can be stopped and started")
        if _alive(process):
            self.out(f"{name} is running (pid {process.pid})")
            return
        {"registry": self._registry}[name]()
        started = next(p for p in self.state.processes if p.name == name)
        self.out(f"started {name} (pid {started.pid})")

    def start(self) -> None:
        """Start every component in order; on any failure stop what started, then raise."""
        if Cluster.running():
            raise ClusterError("a local cluster is already running (make cluster-down first)")
        self.state = State.load() or State()
        self.stop(quiet=True)  # what a cluster that died or was killed left behind
        self._preflight()
        STATE.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(LOGS, ignore_errors=True)
        LOGS.mkdir(parents=True)
        started = time.monotonic()
        try:
            self._network()
            self._certificates()
            self._etcd()
            self._apiserver()
            self._controller_manager()
            self._scheduler()
            self._docker()
            self._registry()
            self._buildkit()
            self._install_knative()
            for name, host in KNATIVE_COMPONENTS.items():
                self._knative(name, str(netns.NETWORK[host]))
                if name == "webhook":
                    self._register_webhooks()
            self._kubelet()
            self._gateway()
            self._write_env()
        except BaseException:
            self.stop(quiet=True)
            raise
        for process in self.state.processes:
            process.rss_mib = rss_mib(process.pid)
        self.state.save()
        self._report(time.monotonic() - started)

    def stop(self, *, quiet: bool = False) -> None:
        """Stop every process by its PID (the stand-ins first), then remove the state."""
        # The state on disk: a component restarted by another Cluster object has its new PID there.
        state = State.load() or self.state
        for process in reversed(state.processes):
            if process.name == "dockerd" and _alive(process):
                self._clean_node(state)
            _stop_pid(process)
            if (child := self._children.pop(process.name, None)) is not None:
                child.wait()  # reaped by _stop_pid; this records it (no zombie, no warning)
            if not quiet:
                self.out(f"stopped {process.name} (pid {process.pid})")
        for name in netns.owned():
            netns.delete(name)
        netns.delete_bridge()
        shutil.rmtree(STATE, ignore_errors=True)
        _unmount_below(RUN)
        shutil.rmtree(RUN, ignore_errors=True)
        self.state = State()
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- steps -----------------------------------------------------------------------------------

    def _preflight(self) -> None:
        netns.require_root()
        for name in tools.CLUSTER_TOOLS:
            try:
                tools.path(name)
            except tools.ToolError as error:
                raise ClusterError(str(error)) from None
        _require("dockerd", "docker.io")
        _require("docker-registry", "docker-registry")
        _require("ip", "iproute2")
        _require("runc", "runc")  # BuildKit's OCI worker runs each build step with it
        docker_client()
        self.state.ports = {
            "gateway": _port_from_env("gateway", "GATEWAY_PORT"),
            "registry": _port_from_env("registry", "REGISTRY_PORT"),
        }

    def _network(self) -> None:
        try:
            netns.create_bridge()
        except netns.NetworkError as error:
            raise ClusterError(f"network: {error}") from None
        self.state.bridge = True
        self.state.save()

    def _certificates(self) -> None:
        ca = pki.Authority(self.pki)
        service_ip = "10.96.0.1"  # the first address of SERVICE_CIDR: the kubernetes Service
        hosts = (
            netns.NODE_IP,
            "127.0.0.1",
            service_ip,
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
        self.ca = ca.cert
        self.serving = ca.issue("apiserver", common_name="kube-apiserver", hosts=hosts)
        self.admin = ca.issue("admin", common_name="admin", organization="system:masters")
        self.service_account = pki.signing_key(self.pki)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> Process:
        log = LOGS / f"{name}.log"
        command = [*netns.exec_prefix(namespace), *argv] if namespace else argv
        with log.open("ab") as sink:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env if env is not None else dict(os.environ),
                cwd=STATE,
                start_new_session=True,
            )
        process = Process(name, child.pid, Path(argv[0]).name, str(log))
        # A restarted component keeps its place (components stop in the reverse order).
        names = [p.name for p in self.state.processes]
        if name in names:
            self.state.processes[names.index(name)] = process
        else:
            self.state.processes.append(process)
        self.state.save()
        self._children[name] = child
        return process

    def _wait(
        self, process: Process, ready: Callable[[], bool], started: float, timeout: float = 60
    ) -> None:
        deadline = started + timeout
        child = self._children[process.name]
        while True:
            code = child.poll()
            if code is not None:
                raise ClusterError(
                    f"{process.name} exited with code {code} while starting: "
                    f"{_last_line(Path(process.log))} (log: {process.log})"
                )
            try:
                if ready():
                    break
            except (OSError, ApiError, aiohttp.ClientError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{process.name} was not ready within {timeout:.0f} s: "
                    f"{_last_line(Path(process.log))} (log: {process.log})"
                )
            time.sleep(0.05)
        process.ready_seconds = time.monotonic() - started
        self.state.save()

    def _http_ok(self, url: str, *, client_cert: bool = True) -> bool:
        import ssl  # noqa: PLC0415

        context = ssl.create_default_context(cafile=str(self.ca))
        if client_cert:
            context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        if url.startswith("https://127.0.0.1") and not client_cert:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        import urllib.request  # noqa: PLC0415

        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)

    def _etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.state.ports.update(etcd=client)
        started = time.monotonic()
        process = self._spawn(
            "etcd",
            [
                str(tools.path("etcd")),
                "--name=local",
                f"--data-dir={STATE / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=local=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",  # a throw-away test cluster: durability buys nothing
                "--log-level=warn",
            ],
        )
        self._wait(process, lambda: _get_ok(f"http://127.0.0.1:{client}/health"), started)

    def _apiserver(self) -> None:
        port = free_port(netns.NODE_IP)
        self.state.ports.update(apiserver=port)
        self.server = f"https://{netns.NODE_IP}:{port}"
        started = time.monotonic()
        process = self._spawn(
            "kube-apiserver",
            [
                str(tools.path("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{self.state.ports['etcd']}",
                # The node's address: the one both the host and the namespaces reach.
                f"--bind-address={netns.NODE_IP}",
                f"--advertise-address={netns.NODE_IP}",
                f"--secure-port={port}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={self.ca}",
                f"--service-account-key-file={self.service_account.cert}",
                f"--service-account-signing-key-file={self.service_account.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                # Webhooks are called at their Service's endpoints: no cluster IP is needed.
                "--enable-aggregator-routing=true",
                "--profiling=false",
                "--v=0",
            ],
        )
        self.kubeconfig.write_text(
            kubeconfig_text(
                self.server,
                self.ca,
                {
                    "client-certificate": str(self.admin.cert),
                    "client-key": str(self.admin.key),
                },
            )
        )
        self._wait(process, lambda: self._http_ok(f"{self.server}/readyz"), started)

    @property
    def client(self) -> Client:
        if self._client is None:
            config = KubeConfig.from_file(str(self.kubeconfig))
            self._client = Client(config=config, field_manager=FIELD_MANAGER)
        return self._client

    def _controller_manager(self) -> None:
        controllers = (
            "serviceaccount-controller", "deployment-controller", "replicaset-controller",
            "endpoints-controller", "endpointslice-controller",
            "endpointslice-mirroring-controller", "garbage-collector-controller",
            "namespace-controller", "clusterrole-aggregation-controller",
            "node-lifecycle-controller", "root-ca-certificate-publisher-controller",
        )  # fmt: skip
        self._kube_component(
            "kube-controller-manager",
            f"--controllers={','.join(controllers)}",
            f"--root-ca-file={self.ca}",
            f"--service-account-private-key-file={self.service_account.key}",
            "--use-service-account-credentials=false",
        )

    def _scheduler(self) -> None:
        self._kube_component("kube-scheduler")

    def _kube_component(self, name: str, *flags: str) -> None:
        """kube-controller-manager or kube-scheduler: one instance (no leader election), its
        secure port on 127.0.0.1, ready when its /healthz answers."""
        port = free_port()
        started = time.monotonic()
        process = self._spawn(
            name,
            [
                str(tools.path(name)),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--profiling=false",
                *flags,
            ],
        )
        self._wait(
            process,
            lambda: self._http_ok(f"https://127.0.0.1:{port}/healthz", client_cert=False),
            started,
        )

    def _docker(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        DOCKER_DATA.mkdir(parents=True, exist_ok=True)
        socket_path = RUN / "docker.sock"
        self.state.docker_host = f"unix://{socket_path}"
        started = time.monotonic()
        process = self._spawn(
            "dockerd",
            [
                _require("dockerd", "docker.io"),
                f"--host={self.state.docker_host}",
                f"--data-root={DOCKER_DATA}",
                f"--exec-root={RUN / 'exec'}",
                f"--pidfile={RUN / 'dockerd.pid'}",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ],
        )
        self._wait(process, lambda: self.docker("version", check=False).returncode == 0, started)

    def docker(
        self, *args: str, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        raw = subprocess.run(
            [docker_client(), *args],
            input=stdin,
            capture_output=True,
            env=dict(
                os.environ, DOCKER_HOST=self.state.docker_host, DOCKER_CONFIG=str(DOCKER_CONFIG)
            ),
            check=False,
        )
        result = subprocess.CompletedProcess(
            raw.args,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise ClusterError(f"docker {args[0]}: {result.stderr.strip()}")
        return result

    def _registry(self) -> None:
        port = self.state.ports["registry"]
        config = STATE / "registry.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "warn", "accesslog": {"disabled": True}},
                    "storage": {
                        "filesystem": {"rootdirectory": str(STATE / "registry")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": f"127.0.0.1:{port}"},
                }
            )
        )
        started = time.monotonic()
        process = self._spawn(
            "registry", [_require("docker-registry", "docker-registry"), "serve", str(config)]
        )
        self._wait(process, lambda: _get_ok(f"http://127.0.0.1:{port}/v2/"), started)

    def _buildkit(self) -> None:
        """BuildKit's daemon on the node's network, with the cluster's registry as plain HTTP,
        and a buildx builder of the remote driver pointing at it, made the current builder in
        DOCKER_CONFIG: the docker-build provider builds there (it refuses Docker's own builder,
        and would otherwise start one from an image on Docker Hub)."""
        registry = f"127.0.0.1:{self.state.ports['registry']}"
        config = STATE / "buildkitd.toml"
        config.write_text(
            '[worker.oci]\n  enabled = true\n  networkMode = "host"\n'
            "[worker.containerd]\n  enabled = false\n"
            "[cdi]\n  disabled = true\n"
            f"[registry.{json.dumps(registry)}]\n  http = true\n"
        )
        BUILDKIT_DATA.mkdir(parents=True, exist_ok=True)
        address = f"unix://{RUN / 'buildkitd.sock'}"
        started = time.monotonic()
        process = self._spawn(
            "buildkitd",
            [str(tools.path("buildkitd")), f"--config={config}", f"--root={BUILDKIT_DATA}",
             f"--addr={address}"],
        )  # fmt: skip
        self._wait(process, lambda: _unix_socket_open(RUN / "buildkitd.sock"), started)
        plugins = DOCKER_CONFIG / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / "docker-buildx").symlink_to(tools.path("docker-buildx"))
        self.docker("buildx", "create", "--name", BUILDER, "--driver", "remote", "--use", address)
        self.docker("buildx", "inspect", "--bootstrap", BUILDER)

    def _node_images(self) -> str:
        """The queue-proxy image (pushed; Knative names it in every pod) and the pause image."""
        registry = f"127.0.0.1:{self.state.ports['registry']}"
        self._import_binary(tools.path("pause"), PAUSE_IMAGE, "/pause")
        queue = f"{registry}/knative-serving/queue:{knative.version()}"
        self._import_binary(tools.path("knative-queue"), queue, "/ko-app/queue")
        pushed = self.docker("push", queue).stdout
        digest = next(w for w in pushed.split() if w.startswith("sha256:"))
        return f"{registry}/knative-serving/queue@{digest}"

    def _import_binary(self, binary: Path, name: str, target: str) -> None:
        """An image of one static binary, its entrypoint, run as Knative's images run (65532)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tmp = tarfile.TarInfo("tmp")
            tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(tmp)
            info = tar.gettarinfo(str(binary), arcname=target.lstrip("/"))
            info.uid = info.gid = 0
            info.mode = 0o755
            with binary.open("rb") as data:
                tar.addfile(info, data)
        self.docker(
            "import",
            "--change",
            f'ENTRYPOINT ["{target}"]',
            "--change",
            "USER 65532",
            "-",
            name,
            stdin=buffer.getvalue(),
        )

    def _install_knative(self) -> None:
        """Knative Serving's core install: namespace, roles, CRDs, config maps, Services."""
        started = time.monotonic()
        queue_image = self._node_images()
        registry = f"127.0.0.1:{self.state.ports['registry']}"
        docs = list(
            knative.documents(
                [
                    *knative.files("100-namespace.yaml"),
                    *knative.files("200-serviceaccount.yaml"),
                    *knative.files("200-roles"),
                    *knative.crd_files(),
                    *knative.files("configmaps"),
                    *knative.files("webhooks/secret.yaml"),
                ]
            )
        )
        for doc in docs:
            if doc["kind"] != "ConfigMap":
                continue
            data = doc.setdefault("data", {})
            name = doc["metadata"]["name"]
            if name == "config-deployment":
                data["queue-sidecar-image"] = queue_image
                # The registry is on the node's loopback, which Knative's controller (in its own
                # namespace) cannot reach: as with kind's local registry, tags there are not
                # resolved to digests. The project deploys by digest anyway.
                data["registries-skipping-tag-resolving"] = (
                    f"kind.local,ko.local,dev.local,{registry}"
                )
            elif name == "config-domain":
                data[DOMAIN] = ""
            elif name == "config-autoscaler":
                # Before scaling to zero, Knative's autoscaler probes the revision's Service by
                # its cluster DNS name to see the activator in the path; with no cluster DNS and
                # no kube-proxy here that probe cannot pass. -1 keeps the activator in the path
                # always, and Knative then skips the probe (kpa/scaler.go). The bosun stack's
                # target of 1 keeps the activator in the path under the default (200) anyway.
                data["target-burst-capacity"] = "-1"
        # Istio's ingress gateway Services, as an Istio install makes them (net-istio routes to
        # them); the gateway stand-in is what answers for them.
        docs += [
            _gateway_service("istio-ingressgateway", "LoadBalancer", 8080),
            _gateway_service("knative-local-gateway", "ClusterIP", 8081),
        ]
        docs.insert(
            0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}
        )
        self.kubectl_apply(docs)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        self._installed = time.monotonic() - started
        self.out(f"{'knative install':<26}{self._installed:>8.2f} s  (CRDs, config, images)")

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(tools.path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"kubectl {args[0]}: {result.stderr.strip()}")
        return result.stdout

    def kubectl_apply(self, docs: list[dict[str, Any]]) -> None:
        self.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(docs),
        )

    def _token_kubeconfig(self, service_account: str) -> Path:
        """A kubeconfig with a token of ``service_account`` (what a pod's projected token is)."""
        path = STATE / f"kubeconfig-{service_account}"
        if not path.exists():
            token = self.kubectl(
                "create",
                "token",
                service_account,
                f"--namespace={knative.NAMESPACE}",
                "--duration=168h",
            ).strip()
            path.write_text(kubeconfig_text(self.server, self.ca, {"token": token}))
        return path

    def _knative(self, name: str, address: str) -> None:
        """Run Knative's Deployment ``name`` as a process in a namespace at ``address``."""
        deployment = knative.deployment(name)
        container = deployment.container
        namespace = f"{netns.PREFIX}{name}"
        hosts = {
            f"{svc}.{knative.NAMESPACE}.svc.cluster.local": str(netns.NETWORK[host])
            for svc, host in (
                ("autoscaler", 3),
                ("activator-service", 4),
                ("controller", 2),
                ("webhook", 5),
            )
        }
        netns.create(namespace, address, hosts)
        pod_name = f"{name}-{NODE_NAME}"
        fields = {
            "metadata.name": pod_name,
            "metadata.namespace": knative.NAMESPACE,
            "status.podIP": address,
            "spec.nodeName": NODE_NAME,
        }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = str(variable["value"])
            else:
                env[variable["name"]] = fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        # Out of a cluster, a kubeconfig replaces the pod's projected service-account token.
        env["KUBECONFIG"] = str(self._token_kubeconfig(deployment.service_account))
        started = time.monotonic()
        process = self._spawn(
            f"knative-{name}", [str(tools.path(f"knative-{name}"))], env=env, namespace=namespace
        )
        ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports", [])}
        readiness = container["readinessProbe"]
        self._wait(process, lambda: _probe(readiness, address, ports), started, START_TIMEOUT)
        self._publish(deployment, address, ports)

    def _publish(self, deployment: knative.Deployment, address: str, ports: dict[str, int]) -> None:
        """The Deployment's Services, with Endpoints at the process (the endpoints controller
        derives these from a pod's address; here no pod stands behind them)."""
        for original in deployment.services:
            service = copy.deepcopy(original)
            service["spec"].pop("selector", None)
            subset_ports = []
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                number = ports.get(target, target) if isinstance(target, str) else target
                subset_ports.append({"name": port["name"], "port": int(number)})
            endpoints = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {
                    "name": service["metadata"]["name"],
                    "namespace": service["metadata"]["namespace"],
                    "labels": service["metadata"].get("labels", {}),
                },
                "subsets": [{"addresses": [{"ip": address}], "ports": subset_ports}],
            }
            self.client.apply(_load(Service, service), force=True)
            self.client.apply(_load(Endpoints, endpoints), force=True)

    def _register_webhooks(self) -> None:
        """Knative's webhook registrations, which its webhook then completes (rules, CA)."""
        started = time.monotonic()
        docs = list(knative.documents(knative.files("webhooks")))
        self.kubectl_apply([d for d in docs if d["kind"] != "Secret"])

        def reconciled() -> bool:
            hook = self.client.get(MutatingWebhookConfiguration, "webhook.serving.knative.dev")
            return bool(hook.webhooks and hook.webhooks[0].clientConfig.caBundle)

        deadline = started + 60
        while not reconciled():
            if time.monotonic() > deadline:
                raise ClusterError("knative-webhook did not register its webhooks within 60 s")
            time.sleep(0.1)
        self.out(f"{'webhook registrations':<26}{time.monotonic() - started:>8.2f} s")

    def _kubelet(self) -> None:
        started = time.monotonic()
        process = self._spawn(
            "kubelet-standin",
            [
                sys.executable,
                "-m",
                "e2e.kubelet",
                f"--kubeconfig={self.kubeconfig}",
                f"--docker-host={self.state.docker_host}",
                f"--node-name={NODE_NAME}",
                f"--pause-image={PAUSE_IMAGE}",
                f"--state={STATE / 'kubelet'}",
                f"--pod-logs={LOGS / 'pods'}",
                f"--version={tools.module_info('kubernetes', 'k8s.io/kubernetes')['Version']}",
            ],
        )
        # Python's own name is what /proc shows; the module name tells it from other Pythons.
        process.executable = "e2e.kubelet"

        def node_ready() -> bool:
            node = self.client.get(Node, NODE_NAME).to_dict()
            taints = node.get("spec", {}).get("taints") or []
            conditions = node.get("status", {}).get("conditions") or []
            untainted = all(t["key"] != "node.kubernetes.io/not-ready" for t in taints)
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return untainted and ready

        self._wait(process, node_ready, started)

    def _gateway(self) -> None:
        started = time.monotonic()
        port = self.state.ports["gateway"]
        process = self._spawn(
            "gateway-standin",
            [
                sys.executable,
                "-m",
                "e2e.gateway",
                f"--kubeconfig={self.kubeconfig}",
                f"--listen=127.0.0.1:{port}",
            ],
        )
        process.executable = "e2e.gateway"

        def published() -> bool:
            service = self.client.get(Service, "istio-ingressgateway", namespace="istio-system")
            ingress = service.to_dict().get("status", {}).get("loadBalancer", {}).get("ingress")
            return bool(ingress) and _get_ok(f"http://127.0.0.1:{port}/healthz/ready")

        self._wait(process, published, started)

    def _write_env(self) -> None:
        values = {
            "KUBECONFIG": str(self.kubeconfig),
            "DOCKER_HOST": self.state.docker_host,
            "DOCKER_CONFIG": str(DOCKER_CONFIG),
            "REGISTRY": f"127.0.0.1:{self.state.ports['registry']}",
            "GATEWAY": f"127.0.0.1:{self.state.ports['gateway']}",
        }
        ENV_FILE.write_text("export " + " ".join(f"{k}={v}" for k, v in values.items()) + "\n")

    def _clean_node(self, state: State) -> None:
        """Every container the kubelet stand-in started (it leaves them, as a kubelet does),
        and the images tagged for this cluster's registry, which goes with it."""
        if not state.docker_host:
            return
        self.state.docker_host = state.docker_host
        listed = self.docker("ps", "-aq", "--filter", f"label={POD_LABEL}", check=False)
        if ids := listed.stdout.split():
            self.docker("rm", "--force", *ids, check=False)
        registry = f"127.0.0.1:{state.ports.get('registry')}/"
        images = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False)
        if tagged := [i for i in images.stdout.split() if i.startswith(registry)]:
            self.docker("rmi", "--force", *tagged, check=False)

    def _report(self, seconds: float) -> None:
        self.out(f"{'component':<26}{'ready after':>10}  {'RSS':>9}")
        for process in self.state.processes:
            self.out(
                f"{process.name:<26}{process.ready_seconds:>8.2f} s {process.rss_mib:>7.0f} MiB"
            )
        total = sum(p.rss_mib for p in self.state.processes)
        self.out(f"{'all':<26}{seconds:>8.2f} s {total:>7.0f} MiB")
        self.out(f"ready: source {ENV_FILE.relative_to(ROOT)}")


def _gateway_service(name: str, kind: str, target: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "istio-system", "labels": {"istio": name}},
        "spec": {
            "type": kind,
            "selector": {"istio": name},
            "ports": [{"name": "http2", "port": 80, "targetPort": target}],
        },
    }


def _load(resource: Any, document: dict[str, Any]) -> Any:
    return resource.from_dict(document)


def _unix_socket_open(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
    return True


def _get_ok(url: str) -> bool:
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own loopback)
        return bool(response.status == 200)


def _probe(spec: dict[str, Any], host: str, ports: dict[str, int]) -> bool:
    async def once() -> bool:
        async with aiohttp.ClientSession() as session:
            return await probe.run(spec, host, ports, session)

    return asyncio.run(once())


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


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
    if State.load() is None and not netns.owned():
        print("no local cluster is running")
        return 0
    Cluster().stop()
    return 0


def _status() -> int:
    state = State.load()
    if state is None:
        print("no local cluster is running")
        return 1
    for process in state.processes:
        status = f"{rss_mib(process.pid):.0f} MiB" if _alive(process) else "NOT RUNNING"
        print(f"{process.name:<26} pid {process.pid:<8} {status}")
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
        "component", nargs="?", choices=RESTARTABLE, help="with stop or start: the component"
    )
    args = parser.parse_args(argv)
    if (args.command in {"stop", "start"}) != (args.component is not None):
        parser.error("stop and start take a component; up, down and status take none")
    try:
        if args.component is not None:
            return _component(args.command, args.component)
        return commands[args.command]()
    except (ClusterError, netns.NetworkError, tools.ToolError) as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cluster: interrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
