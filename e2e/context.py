"""What every component of the local cluster shares: the run directory, the ports, the CA and
the admin kubeconfig, and the processes started so far (kind's ActionContext, envtest's
ControlPlane). A component is a function of this context (see cluster.py's start list)."""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.core_v1 import Endpoints, Service

from e2e import process, tools
from e2e.netns import NODE_IP, exec_prefix
from e2e.pki import KeyPair
from e2e.poll import until

ROOT = tools.ROOT
STATE = ROOT / "build" / "cluster"  # the run directory: removed by `down`
LOGS = ROOT / "build" / "cluster-logs"  # kept after `down`
RUN = Path("/run/mfsa")  # sockets: a short path (unix socket paths are limited to 108 bytes)
PKI = STATE / "pki"
KUBECONFIG = STATE / "kubeconfig"
DOCKER_CONFIG = STATE / "docker-config"  # the docker and buildx clients' configuration
ENV_FILE = STATE / "env"
STATE_FILE = STATE / "state.json"
FIELD_MANAGER = "mfsa-cluster"
NODE_NAME = "node-1"  # the cluster's one node
START_TIMEOUT = 120.0


class ClusterError(RuntimeError):
    """The local control plane could not start, or is not running."""


@dataclass
class State:
    """What `up` started, saved in STATE_FILE for `down`, `status` and other processes."""

    processes: list[process.Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    docker_host: str = ""
    bridge: bool = False
    images: dict[str, str] = field(default_factory=dict)  # images made here, by their role
    sysctls: dict[str, str] = field(default_factory=dict)  # what the host had: restored by down
    kube_chains: list[list[str]] = field(default_factory=list)  # KUBE- chains it had: kept
    netns_before: list[str] = field(default_factory=list)  # network namespaces it had: kept
    blackhole: str = ""  # the route added for the Services' range: removed by down

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
        known = {f.name for f in fields(process.Process)}
        state.processes = [
            process.Process(**{k: v for k, v in p.items() if k in known})
            for p in raw.get("processes", [])
        ]
        return state

    def find(self, name: str) -> process.Process | None:
        return next((p for p in self.processes if p.name == name), None)


# Every port this process has handed out: a port is free until its component binds it, and the
# kernel can give the same one to the next bind to port 0 (it gave etcd the gateway's once).
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on HOST now, and never handed out before by this process."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise ClusterError(f"no free port on {host} that was not handed out already")


def check_port(name: str, host: str, port: int) -> int:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise ClusterError(f"{name}: port {host}:{port} is in use") from None
    _HANDED_OUT.add(port)
    return port


def port_from_env(name: str, variable: str) -> int:
    """The port in environment VARIABLE (which must be free), else a free one."""
    value = os.environ.get(variable, "")
    if not value:
        return free_port()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ClusterError(f"{variable}={value!r}: not a port number (1 to 65535)")
    return check_port(name, "127.0.0.1", int(value))


def docker_client() -> str:
    """Debian's docker client (it builds with BuildKit), else whichever is on PATH."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        raise ClusterError("docker: not found; install docker.io")
    return found


def require(command: str, package: str) -> str:
    """The path of COMMAND, or a ClusterError naming the Debian package that has it."""
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


def service_account(
    name: str, namespace: str, cluster_role: str, binding: str
) -> list[dict[str, Any]]:
    """ServiceAccount NAMESPACE/NAME and BINDING, which grants it CLUSTER_ROLE."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": binding},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": cluster_role},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]  # fmt: skip


def token_kubeconfig(ctx: Context, service_account: str, namespace: str) -> Path:
    """A kubeconfig with a token of NAMESPACE/SERVICE_ACCOUNT: what a pod's projected token
    gives a component, for one that runs as a process."""
    path = STATE / f"kubeconfig-{namespace}-{service_account}"
    if not path.exists():
        token = ctx.kubectl(
            "create", "token", service_account, f"--namespace={namespace}", "--duration=168h"
        ).strip()
        path.write_text(kubeconfig_text(ctx.server, ctx.ca, {"token": token}))
    return path


def get_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
        return bool(response.status == 200)


@dataclass
class Context:
    """The cluster being started (or stopped): its state, its processes and their clients."""

    out: Callable[[str], None] = print
    state: State = field(default_factory=State)
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _spawned: dict[str, float] = field(default_factory=dict)  # when each child was spawned
    _client: Client | None = None

    # -- the cluster's CA and admin credentials, written by controlplane.certificates ------------

    @property
    def ca(self) -> Path:
        return PKI / "ca.crt"

    @property
    def admin(self) -> KeyPair:
        return KeyPair(PKI / "admin.crt", PKI / "admin.key")

    @property
    def server(self) -> str:
        return f"https://{NODE_IP}:{self.state.ports['apiserver']}"

    @property
    def client(self) -> Client:
        if self._client is None:
            config = KubeConfig.from_file(str(KUBECONFIG))
            self._client = Client(config=config, field_manager=FIELD_MANAGER)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- processes -------------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        namespace: str | None = None,
        executable: str | None = None,
    ) -> process.Process:
        """Start ARGV as component NAME (in network namespace NAMESPACE), its output to its log,
        without waiting for it (``wait_ready`` does). ``executable`` is what /proc shows of it
        when that is not ARGV[0]'s name (a module run by Python)."""
        log = LOGS / f"{name}.log"
        command = [*exec_prefix(namespace), *argv] if namespace else argv
        self._spawned[name] = time.monotonic()
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
        started = process.Process(
            name, child.pid, executable or Path(argv[0]).name, str(log),
            start_ticks=process.start_ticks(child.pid),
        )  # fmt: skip
        # A restarted component keeps its place (components stop in the reverse order).
        names = [p.name for p in self.state.processes]
        if name in names:
            self.state.processes[names.index(name)] = started
        else:
            self.state.processes.append(started)
        self.state.save()
        self.children[name] = child
        return started

    def wait_ready(self, name: str, ready: Callable[[], bool], *, timeout: float = 60) -> None:
        """Wait until ``ready()`` holds for component NAME, spawned before, within TIMEOUT of
        its spawn (the seconds from its spawn recorded in the state); ClusterError if the
        process exits first or the time is up. ``ready()`` raising OSError or ApiError is not
        ready yet."""
        started = self.state.processes[[p.name for p in self.state.processes].index(name)]
        child, since = self.children[name], self._spawned[name]

        def check() -> bool:
            if (code := child.poll()) is not None:
                raise ClusterError(
                    f"{name} exited with code {code} while starting: "
                    f"{process.last_line(Path(started.log))} (log: {started.log})"
                )
            return ready()

        try:
            until(check, timeout=max(0.0, since + timeout - time.monotonic()), what=name,
                  retry_on=(OSError, ApiError), initial=0.05, cap=0.1)  # fmt: skip
        except TimeoutError:
            raise ClusterError(
                f"{name} was not ready within {timeout:.0f} s: "
                f"{process.last_line(Path(started.log))} (log: {started.log})"
            ) from None
        started.ready_seconds = time.monotonic() - since
        self.state.save()

    def start(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], bool],
        *,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        namespace: str | None = None,
        executable: str | None = None,
    ) -> None:
        """`spawn` NAME and `wait_ready` for it."""
        self.spawn(name, argv, env=env, namespace=namespace, executable=executable)
        self.wait_ready(name, ready, timeout=timeout)

    # -- clients ---------------------------------------------------------------------------------

    def tls(self, *, client_cert: bool = True) -> ssl.SSLContext:
        """TLS to the control plane: the cluster's CA, the admin's certificate. Without a client
        certificate (a component's own health port), its self-signed serving certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if client_cert:
            context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(tools.path("kubectl")), f"--kubeconfig={KUBECONFIG}", *args],
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
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-",
            stdin=yaml.safe_dump_all(docs),
        )  # fmt: skip

    def publish(
        self, service: dict[str, Any], address: str, ports: dict[str, int] | None = None
    ) -> None:
        """SERVICE (a manifest) with Endpoints at ADDRESS, as the endpoints controller derives
        them from a ready pod's address: for a component that runs as a process, with no pod
        behind its Service (its selector is dropped). PORTS resolves named target ports."""
        service = copy.deepcopy(service)
        service["spec"].pop("selector", None)
        subset_ports = []
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            number = (ports or {}).get(target, target) if isinstance(target, str) else target
            entry = {"name": port["name"], "port": int(number)}
            if "protocol" in port:
                entry["protocol"] = port["protocol"]
            subset_ports.append(entry)
        metadata = service["metadata"]
        endpoints = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": metadata["name"], "namespace": metadata["namespace"],
                         "labels": metadata.get("labels", {})},
            "subsets": [{"addresses": [{"ip": address}], "ports": subset_ports}],
        }  # fmt: skip
        self.client.apply(cast(Service, Service.from_dict(service)), force=True)
        self.client.apply(cast(Endpoints, Endpoints.from_dict(endpoints)), force=True)

    def docker(
        self, *args: str, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The docker client against the node's daemon, with the cluster's client config."""
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
