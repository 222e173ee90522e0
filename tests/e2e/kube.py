"""Helpers of the end-to-end tests: kubectl, docker and HTTP against the local control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx
import yaml
from lightkube import Client, KubeConfig

from e2e import node, tools
from e2e.context import docker_client
from e2e.poll import until

ROOT = tools.ROOT
PROJECT = "myfirstserverlessapp"
BASE_IMAGE = "myfirstserverlessapp-ci-base:bookworm"  # .ci/base-image's, as CI names it
T = TypeVar("T")


@dataclass
class Kube:
    env: dict[str, str]
    images: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.env["GATEWAY"]

    @property
    def registry(self) -> str:
        return self.env["REGISTRY"]

    @contextmanager
    def stopped(self, component: str) -> Iterator[None]:
        """COMPONENT of the cluster stopped for the block, then started again, as a user does it
        (`python -m e2e.cluster stop|start COMPONENT`: the cluster's processes are not ours)."""
        said = self.run(sys.executable, "-m", "e2e.cluster", "stop", component).stdout
        assert said.startswith(f"stopped {component} "), said  # a fault injected, not assumed
        try:
            yield
        finally:
            self.run(sys.executable, "-m", "e2e.cluster", "start", component)

    @cached_property
    def client(self) -> Client:
        return Client(config=KubeConfig.from_file(self.env["KUBECONFIG"]), field_manager="e2e")

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            cwd=ROOT,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            said = result.stderr.strip() or result.stdout.strip()[-2000:]
            raise AssertionError(f"{' '.join(args[:3])} exited {result.returncode}: {said}")
        return result

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            str(tools.path("kubectl")), *args, stdin=stdin, check=check, timeout=timeout
        )

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return self.run(docker_client(), *args, check=check, timeout=timeout)

    def apply(self, documents: list[dict[str, Any]], *, dry_run: bool = False) -> Any:
        """Server-side apply, as `kubectl apply --server-side`; returns what the server made."""
        args = ["apply", "--server-side", "--field-manager=e2e", "-o", "json", "-f", "-"]
        if dry_run:
            args.append("--dry-run=server")
        out = self.kubectl(*args, stdin=yaml.safe_dump_all(documents)).stdout
        return json.loads(out)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait_ready(self, name: str, namespace: str, timeout: float = 120) -> dict[str, Any]:
        """The Knative Service once Ready for its current generation."""

        def ready() -> dict[str, Any] | None:
            service: dict[str, Any] = self.get("ksvc", name, "-n", namespace)
            status = service.get("status", {})
            current = status.get("observedGeneration") == service["metadata"]["generation"]
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            return service if current and conditions.get("Ready") == "True" else None

        return eventually(ready, timeout, f"ksvc {namespace}/{name} Ready")

    def call(self, host: str, query: str = "in=10000&nap=0&processes=50") -> httpx.Response:
        """GET /?QUERY through the gateway stand-in, with Host: HOST, as curl -H does."""
        return httpx.get(f"http://{self.gateway}/?{query}", headers={"Host": host}, timeout=30)

    def exec(self, namespace: str, pod: str, container: str, *command: str) -> str:
        """`kubectl exec` of COMMAND in a container of a pod: its standard output."""
        return self.kubectl("exec", "-n", namespace, pod, "-c", container, "--", *command).stdout

    def serving_pods(self, namespace: str, service: str) -> list[str]:
        """The pods of a Knative Service that answer requests: Ready and not being deleted."""
        selector = f"serving.knative.dev/service={service}"
        pods = self.get("pods", "-n", namespace, "-l", selector)["items"]
        return [pod["metadata"]["name"] for pod in pods if serving(pod)]

    def exec_serving(self, namespace: str, service: str, container: str, *command: str) -> str:
        """COMMAND's output in CONTAINER of a serving pod of a Knative Service. The autoscaler
        adds and removes pods while tests call (at target 1, one request in flight asks for
        two), so a pod gone or going when its exec fails is chosen again; a failed exec in a
        pod that still serves is an error."""

        def attempt() -> str | None:
            pods = self.serving_pods(namespace, service)
            if not pods:
                return None
            args = ("exec", "-n", namespace, pods[0], "-c", container, "--", *command)
            result = self.kubectl(*args, check=False)
            if result.returncode == 0:
                return result.stdout
            if pods[0] in self.serving_pods(namespace, service):
                raise AssertionError(f"kubectl exec in {pods[0]}: {result.stderr.strip()}")
            return None

        return eventually(attempt, 120, f"a command run in a serving pod of {service}")

    def logs(self, namespace: str, pod: str, container: str) -> str:
        """`kubectl logs` of a container of a pod."""
        return self.kubectl("logs", "-n", namespace, pod, "-c", container).stdout

    def pod_containers(self) -> list[str]:
        """The pod uid of every container on the node (containerd's, in the CRI's namespace)."""
        uids = []
        for container in node.ctr("containers", "list", "--quiet").stdout.split():
            info = node.ctr("containers", "info", container)
            if info.returncode == 0:  # else removed since listed
                uids.append(json.loads(info.stdout)["Labels"].get(POD_UID, ""))
        return uids


POD_UID = "io.kubernetes.pod.uid"  # the CRI's label on each of a pod's containers


@dataclass
class Stack:
    """One stack of the project, driven through the pulumi CLI as a user drives it."""

    name: str
    kube: Kube
    state: Path
    config_file: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.kube.env,
            "PULUMI_BACKEND_URL": self.state.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "",
            **extra,
        }

    def pulumi(
        self, *args: str, check: bool = True, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`pulumi ARGS --stack NAME` (with the stack's config file where ARGS takes one)."""
        head, dashes, tail = _split(args)
        words = [*head, "--stack", self.name, "--non-interactive"]
        if args[0] in {"up", "preview", "destroy", "config"}:
            words.append(f"--config-file={self.config_file}")
        words += [*dashes, *tail]
        result = subprocess.run(
            [sys.executable, "-m", "e2e.language_host", *words],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def configure(self, values: dict[str, Any]) -> None:
        """Pulumi.<stack>.yaml, as a user writes it."""
        config = {f"{PROJECT}:{key}": value for key, value in values.items()}
        self.config_file.write_text(yaml.safe_dump({"config": config}))

    def outputs(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.pulumi("stack", "output", "--json").stdout)
        return result


def _split(args: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """ARGS before `--`, the `--` itself if present, and what follows it."""
    if "--" not in args:
        return list(args), [], []
    at = args.index("--")
    return list(args[:at]), ["--"], list(args[at + 1 :])


def serving(pod: dict[str, Any]) -> bool:
    """Ready and not being deleted: a pod that answers requests."""
    conditions = pod.get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready and not pod["metadata"].get("deletionTimestamp")


def eventually(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """CHECK's first answer that is not None or False (e2e/poll.py's backoff, up to 1 s apart);
    TimeoutError naming WHAT after TIMEOUT seconds."""
    answered = until(lambda: _answered(check()), timeout=timeout, what=what, initial=0.1, cap=1.0)
    assert answered is not None  # until returns a truthy answer
    return answered[0]


def _answered(result: T | None) -> tuple[T] | None:
    """RESULT as a truthy tuple unless it is None or False (0 and "" are answers)."""
    return None if result is None or result is False else (result,)


def _local_base(kube: Kube) -> None:
    """The CI base image in the node's docker (made once per machine, by .ci/base-image)."""
    if kube.docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        kube.run("env", f"DOCKER={docker_client()}", str(ROOT / ".ci" / "base-image"), BASE_IMAGE,
                 timeout=600)  # fmt: skip


def base_image_ref(kube: Kube) -> str:
    """The CI base image pushed to the cluster's registry, where BuildKit pulls it from."""
    if "base" not in kube.images:
        _local_base(kube)
        tag = f"{kube.registry}/{BASE_IMAGE}"
        kube.docker("tag", BASE_IMAGE, tag)
        kube.docker("push", tag)
        kube.images["base"] = tag
    return kube.images["base"]


def app_image_ref(kube: Kube) -> str:
    """Build the Dockerfile on the CI base with docker and push it by digest."""
    if "app" in kube.images:
        return kube.images["app"]
    _local_base(kube)
    tag = f"{kube.registry}/myfirstserverlessapp:e2e"
    kube.docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
                "--tag", tag, str(ROOT))  # fmt: skip
    pushed = kube.docker("push", tag).stdout
    digest = next(word for word in pushed.split() if word.startswith("sha256:"))
    kube.images["app"] = f"{kube.registry}/myfirstserverlessapp@{digest}"
    return kube.images["app"]
