"""Stand-in for the kubelet: `python -m e2e.kubelet`, the one node of the local cluster.

There is no kubelet here (it needs a CRI runtime, cgroups it can own and a CNI plugin). This
process does the kubelet's part of the cluster's work, and only that:

- registers its Node, keeps its Lease and Ready condition fresh (the node lifecycle controller
  then lifts the not-ready taint, and kube-scheduler binds pods to it);
- for every pod bound to the node: a sandbox (a pause container whose network namespace gets an
  address on the node's bridge and a route for the Services' range via the node, as a CNI
  plugin would give, and the cluster's DNS in its resolv.conf), then each container from its image,
  with docker, with the pod spec's command, args, env (values, field and resource references,
  config maps and secrets), user, read-only root, capabilities, emptyDir volumes and limits;
- runs readiness, liveness and startup probes and the preStop hook, restarts exited containers
  with the kubelet's back-off, and reports the pod's status as the kubelet does (phase, pod IP,
  start time, conditions, container statuses);
- on deletion: preStop, SIGTERM, the grace period, SIGKILL, then removes the pod object.

Not done (nothing here needs it): init and ephemeral containers, projected service-account
token, hostPath and persistent volumes, exec probes and hooks, `kubectl logs`/`exec` (use
`docker logs`), DNS policies other than ClusterFirst.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import math
import os
import platform
import re
import shutil
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import aiohttp
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Node, Pod, Secret, Service
from lightkube.types import OnErrorAction, OnErrorResult, PatchType

from e2e import netns, probe, tools
from e2e.context import KUBECONFIG, LOGS, STATE, Context
from e2e.images import PAUSE_IMAGE, POD_LABEL
from e2e.knative import NODE_NAME
from infra.rules import quantity

LOG = logging.getLogger("kubelet-standin")
FIELD_MANAGER = "kubelet-standin"
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0  # the kubelet's restart back-off
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10.0


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Docker:
    """The docker CLI against the node's daemon."""

    def __init__(self, host: str) -> None:
        self.env = dict(os.environ, DOCKER_HOST=host)
        self.binary = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode().strip(), err.decode().strip()

    async def ok(self, *args: str) -> str:
        code, out, err = await self(*args)
        if code != 0:
            raise DockerError(err or out or f"docker {args[0]} exited with {code}")
        return out


class DockerError(RuntimeError):
    pass


class ConfigError(RuntimeError):
    """A container's configuration cannot be honoured (CreateContainerConfigError)."""


@dataclass
class ContainerState:
    spec: dict[str, Any]
    docker_id: str = ""
    image_id: str = ""
    restarts: int = 0
    ready: bool = False
    started: bool = False
    started_at: str = ""
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])


class PodWorker:
    """One pod's life on the node: sandbox, containers, probes, status, termination."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.name, self.namespace, self.uid = meta["name"], meta["namespace"], meta["uid"]
        self.short = self.uid.replace("-", "")[:10]
        self.spec = pod["spec"]
        self.containers = {c["name"]: ContainerState(c) for c in self.spec["containers"]}
        self.address = ""
        self.sandbox = ""
        self.start_time = ""
        self.transitions: dict[str, tuple[str, str]] = {}
        self.terminating = False
        self.failed: tuple[str, str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.status_lock = asyncio.Lock()
        self.volumes = kubelet.state / "pods" / self.uid / "volumes"

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        self.start_time = now()
        await self.report()
        try:
            await self._sandbox()
            for container in self.containers.values():
                await self._start(container)
        except (DockerError, netns.NetworkError) as error:
            LOG.warning("pod %s/%s: %s", self.namespace, self.name, error)
            self.failed = ("FailedCreatePodSandBox", str(error)[:500])
        else:
            LOG.info("pod %s/%s: started at %s", self.namespace, self.name, self.address)
        await self.report()

    async def _sandbox(self) -> None:
        docker = self.kubelet.docker
        self.address = self.kubelet.allocate()
        name = f"k8s_POD_{self.name}_{self.namespace}_{self.short}"
        self.sandbox = await docker.ok(
            "run",
            "--detach",
            "--name",
            name,
            "--label",
            f"{POD_LABEL}={self.uid}",
            "--network",
            "none",
            "--ipc",
            "shareable",
            "--hostname",
            self.name[:63],
            *self._dns_args(),
            self.kubelet.pause_image,
        )
        pid = await docker.ok("inspect", "--format", "{{.State.Pid}}", self.sandbox)
        await asyncio.to_thread(netns.adopt, self.netns, int(pid), self.address)

    def _dns_args(self) -> list[str]:
        """The pod's resolv.conf, as the kubelet writes it with --cluster-dns for dnsPolicy
        ClusterFirst (the default); its containers share the sandbox's."""
        if self.spec.get("dnsPolicy", "ClusterFirst") != "ClusterFirst":
            return []
        conf = netns.resolv_conf(self.namespace).splitlines()
        args = [f"--dns={line.split()[1]}" for line in conf if line.startswith("nameserver")]
        for line in conf:
            if line.startswith("search"):
                args += [f"--dns-search={domain}" for domain in line.split()[1:]]
            elif line.startswith("options"):
                args += [f"--dns-option={option}" for option in line.split()[1:]]
        return args

    @property
    def netns(self) -> str:
        return f"{netns.PREFIX}pod-{self.short}"

    async def _start(self, state: ContainerState) -> None:
        """Pull, create and start one container; schedule its probes and its exit watch."""
        docker = self.kubelet.docker
        spec = state.spec
        image = spec["image"]
        try:
            if (
                spec.get("imagePullPolicy") == "Always"
                or (await docker("image", "inspect", image))[0] != 0
            ):
                state.waiting = ("ContainerCreating", "pulling image")
                await docker.ok("pull", "--quiet", image)
            args = await self._run_args(state)
        except DockerError as error:
            state.waiting = ("ErrImagePull", str(error)[:500])
            self._retry(state, BACKOFF_START)
            return
        except ConfigError as error:
            state.waiting = ("CreateContainerConfigError", str(error))
            self._retry(state, BACKOFF_START)
            return
        try:
            state.docker_id = await docker.ok(*args)
        except DockerError as error:
            await docker("rm", "--force", args[args.index("--name") + 1])
            state.waiting = ("RunContainerError", str(error)[:500])
            self._retry(state, self._backoff(state))
            return
        state.image_id = await docker.ok("inspect", "--format", "{{.Image}}", state.docker_id)
        state.started_at = now()
        state.waiting = None
        state.terminated = None
        state.ready = False
        state.started = "startupProbe" not in spec
        state.tasks = [asyncio.create_task(self._watch_exit(state))]
        state.tasks += [
            asyncio.create_task(self._probe_loop(state, kind))
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in spec
        ]
        if "readinessProbe" not in spec and "startupProbe" not in spec:
            state.ready = True

    def _retry(self, state: ContainerState, delay: float) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            if not self.terminating:
                await self._start(state)
                await self.report()

        state.tasks = [asyncio.create_task(later())]

    @staticmethod
    def _backoff(state: ContainerState) -> float:
        return float(min(BACKOFF_START * 2.0 ** max(state.restarts - 1, 0), BACKOFF_MAX))

    async def _watch_exit(self, state: ContainerState) -> None:
        code = int((await self.kubelet.docker.ok("wait", state.docker_id)) or "0")
        if self.terminating:
            return
        finished = await self.kubelet.docker(
            "inspect", "--format", "{{.State.FinishedAt}}", state.docker_id
        )
        state.terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else ("OOMKilled" if code == 137 else "Error"),
            "startedAt": state.started_at,
            "finishedAt": finished[1][:19] + "Z" if finished[0] == 0 else now(),
            "containerID": f"docker://{state.docker_id}",
        }
        for task in state.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        state.ready = False
        policy = self.spec.get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            await self.report()
            return
        state.last_terminated, state.terminated = state.terminated, None
        state.restarts += 1
        delay = self._backoff(state)
        state.waiting = (
            "CrashLoopBackOff",
            f"back-off {delay:.0f}s restarting failed container {state.name} in pod {self.name}",
        )
        old = state.docker_id
        await self.report()
        await asyncio.sleep(delay)
        if not self.terminating:
            await self.kubelet.docker("rm", "--force", old)
            await self._start(state)
            await self.report()

    async def _probe_loop(self, state: ContainerState, kind: str) -> None:
        spec = state.spec[kind]
        period = float(spec.get("periodSeconds", 10))
        success_threshold = int(spec.get("successThreshold", 1))
        failure_threshold = int(spec.get("failureThreshold", 3))
        ports = {
            p["name"]: int(p["containerPort"]) for p in state.spec.get("ports", []) if "name" in p
        }
        await asyncio.sleep(float(spec.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while True:
            if kind != "startupProbe" and not state.started:
                await asyncio.sleep(min(period, 0.5))
                continue
            ok = await probe.run(spec, self.address, ports, self.kubelet.http)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "startupProbe":
                if ok:
                    state.started = True
                    if "readinessProbe" not in state.spec:
                        state.ready = True
                    await self.report()
                    return
                if failures >= failure_threshold:
                    await self._kill(state, "startup probe failed")
                    return
            elif kind == "readinessProbe":
                ready = state.ready
                if ok and successes >= success_threshold:
                    ready = True
                elif not ok and failures >= failure_threshold:
                    ready = False
                if ready != state.ready:
                    state.ready = ready
                    await self.report()
            elif not ok and failures >= failure_threshold:
                await self._kill(state, "liveness probe failed")
                return
            # Until the first success the kubelet probes readiness again at once, not a period
            # later: a container is ready as soon as it answers.
            await asyncio.sleep(period if state.ready or kind != "readinessProbe" else 0.2)

    async def _kill(self, state: ContainerState, why: str) -> None:
        LOG.info(
            "pod %s/%s container %s: %s, restarting", self.namespace, self.name, state.name, why
        )
        grace = int(self.spec.get("terminationGracePeriodSeconds", 30))
        await self.kubelet.docker("stop", "--time", str(grace), state.docker_id)

    async def terminate(self) -> None:
        """Graceful deletion: preStop hooks, SIGTERM, the grace period, then SIGKILL."""
        if self.terminating:
            return
        self.terminating = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        for state in self.containers.values():
            for task in state.tasks:
                task.cancel()
        deletion = self.pod["metadata"].get("deletionGracePeriodSeconds")
        grace = int(
            deletion if deletion is not None else self.spec.get("terminationGracePeriodSeconds", 30)
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        LOG.info("pod %s/%s: terminating, grace period %d s", self.namespace, self.name, grace)
        await asyncio.gather(*(self._stop(s, started + grace) for s in self.containers.values()))
        await self.remove()
        try:
            await self.kubelet.client.delete(
                Pod, self.name, namespace=self.namespace, grace_period=0
            )
        except ApiError as error:
            LOG.warning("pod %s/%s: not deleted: %s", self.namespace, self.name,
                        error.status.message)  # fmt: skip
        LOG.info(
            "pod %s/%s: terminated in %.1f s", self.namespace, self.name, loop.time() - started
        )

    async def _stop(self, state: ContainerState, deadline: float) -> None:
        if not state.docker_id:
            return
        loop = asyncio.get_running_loop()
        hook = (state.spec.get("lifecycle") or {}).get("preStop")
        if hook and state.terminated is None:
            ports = {
                p["name"]: int(p["containerPort"])
                for p in state.spec.get("ports", [])
                if "name" in p
            }
            budget = max(deadline - loop.time(), 0.1)
            with contextlib.suppress(TimeoutError, ValueError):
                if "httpGet" in hook:
                    action = dict(hook, timeoutSeconds=budget)
                    await asyncio.wait_for(
                        probe.run(action, self.address, ports, self.kubelet.http), budget
                    )
                elif "sleep" in hook:
                    await asyncio.sleep(min(float(hook["sleep"]["seconds"]), budget))
        remaining = max(math.ceil(deadline - loop.time()), 0)
        await self.kubelet.docker("stop", "--time", str(remaining), state.docker_id)

    async def remove(self) -> None:
        """Remove every container of the pod, its namespace, address and volumes."""
        code, out, _ = await self.kubelet.docker(
            "ps", "-aq", "--filter", f"label={POD_LABEL}={self.uid}"
        )
        if code == 0 and out:
            await self._keep_logs()
            await self.kubelet.docker("rm", "--force", *out.split())
        await asyncio.to_thread(netns.delete, self.netns)
        self.kubelet.release(self.address)
        shutil.rmtree(self.volumes.parent, ignore_errors=True)

    async def _keep_logs(self) -> None:
        """Each container's output, kept after the pod is gone (the kubelet's /var/log/pods)."""
        if self.kubelet.logs is None:
            return
        self.kubelet.logs.mkdir(parents=True, exist_ok=True)
        for state in self.containers.values():
            if state.docker_id:
                _, out, err = await self.kubelet.docker("logs", state.docker_id)
                name = f"{self.namespace}_{self.name}_{state.name}.log"
                (self.kubelet.logs / name).write_text(out + ("\n" if out else "") + err)

    # -- the container's configuration -----------------------------------------------------------

    async def _run_args(self, state: ContainerState) -> list[str]:
        spec = state.spec
        pod_security = self.spec.get("securityContext") or {}
        security = {**pod_security, **(spec.get("securityContext") or {})}
        args = [
            "run",
            "--detach",
            "--name",
            f"k8s_{state.name}_{self.name}_{self.namespace}_{self.short}_{state.restarts}",
            "--label",
            f"{POD_LABEL}={self.uid}",
            "--network",
            f"container:{self.sandbox}",
            "--ipc",
            f"container:{self.sandbox}",
        ]
        env = await self._env(spec)
        for name, value in env.items():
            args += ["--env", f"{name}={value}"]
        user = await self._user(spec["image"], security)
        if user:
            args += ["--user", user]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        capabilities = security.get("capabilities") or {}
        args += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
        args += [f"--cap-add={c}" for c in capabilities.get("add", [])]
        limits = (spec.get("resources") or {}).get("limits") or {}
        if "memory" in limits and (amount := quantity(str(limits["memory"]))):
            args += ["--memory", str(int(amount))]
        if "cpu" in limits and (amount := quantity(str(limits["cpu"]))):
            args += ["--cpus", f"{amount:f}"]
        args += self._mounts(spec)
        if spec.get("workingDir"):
            args += ["--workdir", spec["workingDir"]]
        command, arguments = spec.get("command") or [], spec.get("args") or []
        command = [_expand(c, env) for c in command]
        arguments = [_expand(a, env) for a in arguments]
        if command:
            args += ["--entrypoint", command[0], spec["image"], *command[1:], *arguments]
        else:
            args += [spec["image"], *arguments]
        return args

    async def _user(self, image: str, security: dict[str, Any]) -> str:
        uid, gid = security.get("runAsUser"), security.get("runAsGroup")
        if security.get("runAsNonRoot") and uid is None:
            image_user = await self.kubelet.docker.ok(
                "image", "inspect", "--format", "{{.Config.User}}", image
            )
            name = image_user.split(":")[0]
            if not name.isdigit():
                raise ConfigError(
                    f"image has non-numeric user ({name or 'root'}), cannot verify user is non-root"
                )
            if int(name) == 0:
                raise ConfigError("container has runAsNonRoot and image will run as root")
        if security.get("runAsNonRoot") and uid == 0:
            raise ConfigError("container's runAsUser breaks non-root policy")
        if uid is None:
            return ""
        return f"{uid}:{gid}" if gid is not None else str(uid)

    def _mounts(self, spec: dict[str, Any]) -> list[str]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        args: list[str] = []
        for mount in spec.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            if "emptyDir" not in volume:
                continue  # see the module's docstring: only emptyDir volumes are given
            empty = volume["emptyDir"] or {}
            if empty.get("medium") == "Memory":
                size = quantity(str(empty.get("sizeLimit", ""))) if empty.get("sizeLimit") else None
                options = "rw,mode=1777" + (f",size={int(size)}" if size else "")
                args += ["--tmpfs", f"{mount['mountPath']}:{options}"]
            else:
                source = self.volumes / mount["name"]
                source.mkdir(parents=True, exist_ok=True)
                source.chmod(0o1777)
                read_only = ",readonly" if mount.get("readOnly") else ""
                args += ["--mount", f"type=bind,src={source},dst={mount['mountPath']}{read_only}"]
        return args

    def _field(self, path: str) -> str:
        """A downward-API field of the pod (env valueFrom.fieldRef)."""
        meta = self.pod["metadata"]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.kubelet.node_name,
            "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "status.hostIP": netns.NODE_IP,
            "status.hostIPs": netns.NODE_IP,
            "status.podIP": self.address,
            "status.podIPs": self.address,
        }
        if path not in fields:
            raise ConfigError(f"unsupported fieldPath {path!r}")
        return str(fields[path])

    async def _env(self, spec: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = dict(self.kubelet.service_env)
        for source in spec.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = await self._data(ConfigMap, source["configMapRef"])
            else:
                data = await self._data(Secret, source.get("secretRef", {}))
            env.update({prefix + k: v for k, v in data.items()})
        for variable in spec.get("env", []):
            name = variable["name"]
            source = variable.get("valueFrom")
            if source is None:
                env[name] = _expand(str(variable.get("value", "")), env)
            elif "fieldRef" in source:
                env[name] = self._field(source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                env[name] = _resource_value(spec, source["resourceFieldRef"])
            else:
                key_ref = source.get("configMapKeyRef")
                kind = ConfigMap if key_ref is not None else Secret
                ref = key_ref if key_ref is not None else source.get("secretKeyRef", {})
                data = await self._data(kind, ref)
                if ref.get("key") in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise ConfigError(
                        f"couldn't find key {ref.get('key')} in {kind.__name__} "
                        f"{self.namespace}/{ref.get('name')}"
                    )
        return env

    async def _data(
        self, kind: type[ConfigMap] | type[Secret], ref: dict[str, Any]
    ) -> dict[str, str]:
        try:
            obj = await self.kubelet.client.get(kind, ref.get("name", ""), namespace=self.namespace)
        except ApiError as error:
            if ref.get("optional"):
                return {}
            raise ConfigError(f"{kind.__name__.lower()} {ref.get('name')!r} not found") from error
        if isinstance(obj, Secret):
            import base64  # noqa: PLC0415

            return {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
        return dict(obj.data or {})

    # -- status -------------------------------------------------------------------------------

    def _condition(self, kind: str, true: bool, reason: str = "") -> dict[str, Any]:
        status = "True" if true else "False"
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != status:
            self.transitions[kind] = (status, now())
        condition = {
            "type": kind,
            "status": status,
            "lastTransitionTime": self.transitions[kind][1],
        }
        if reason and not true:
            condition["reason"] = reason
        return condition

    def _container_status(self, state: ContainerState) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": state.name,
            "image": state.spec["image"],
            "imageID": state.image_id,
            "ready": state.ready,
            "started": state.started and state.waiting is None and state.terminated is None,
            "restartCount": state.restarts,
        }
        if state.docker_id:
            status["containerID"] = f"docker://{state.docker_id}"
        if state.terminated is not None:
            status["state"] = {"terminated": state.terminated}
        elif state.waiting is not None:
            reason, message = state.waiting
            status["state"] = {
                "waiting": {"reason": reason, **({"message": message} if message else {})}
            }
        else:
            status["state"] = {"running": {"startedAt": state.started_at}}
        if state.last_terminated is not None:
            status["lastState"] = {"terminated": state.last_terminated}
        return status

    def status(self) -> dict[str, Any]:
        states = list(self.containers.values())
        all_ready = all(s.ready for s in states)
        running = any(s.docker_id and s.terminated is None and s.waiting is None for s in states)
        finished = all(s.terminated is not None for s in states)
        if finished:
            phase = (
                "Succeeded"
                if all(s.terminated and s.terminated["exitCode"] == 0 for s in states)
                else "Failed"
            )
        elif running or any(s.restarts for s in states):
            phase = "Running"
        else:
            phase = "Pending"
        sandbox = bool(self.sandbox)
        not_ready = "ContainersNotReady"
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": netns.NODE_IP,
            "hostIPs": [{"ip": netns.NODE_IP}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("PodReadyToStartContainers", sandbox),
                self._condition("Initialized", True),
                self._condition("Ready", all_ready, not_ready),
                self._condition("ContainersReady", all_ready, not_ready),
                self._condition("PodScheduled", True),
            ],
            "containerStatuses": [self._container_status(s) for s in states],
        }
        if self.address:
            status["podIP"] = self.address
            status["podIPs"] = [{"ip": self.address}]
        if self.failed is not None:
            status["reason"], status["message"] = self.failed
        return status

    async def report(self) -> None:
        if self.terminating:
            return
        async with self.status_lock:
            try:
                await self.kubelet.client.patch(
                    Pod.Status,
                    self.name,
                    {"status": self.status()},
                    namespace=self.namespace,
                    patch_type=PatchType.MERGE,
                )
            except ApiError as error:
                if error.status.code != 404:
                    LOG.warning(
                        "pod %s/%s: status not written: %s",
                        self.namespace,
                        self.name,
                        error.status.message,
                    )


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references to variables defined before; $$ escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


def _resource_value(spec: dict[str, Any], ref: dict[str, Any]) -> str:
    kind, _, resource = str(ref["resource"]).partition(".")
    value = ((spec.get("resources") or {}).get(kind) or {}).get(resource)
    amount = quantity(str(value)) if value is not None else None
    if amount is None:  # unset: the node's allocatable, as the kubelet reports it
        amount = Decimal(os.cpu_count() or 1) if resource == "cpu" else Decimal(_memory_bytes())
    divisor = quantity(str(ref.get("divisor", "1"))) or Decimal(1)
    return str(math.ceil(amount / divisor))


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class Kubelet:
    def __init__(
        self,
        client: AsyncClient,
        *,
        docker: Docker,
        node_name: str,
        pause_image: str,
        state: Path,
        version: str,
        logs: Path | None = None,
    ) -> None:
        self.client = client
        self.kubelet_version = version  # the control plane's: no version skew to account for
        self.logs = logs
        self.docker = docker
        self.node_name = node_name
        self.pause_image = pause_image
        self.state = state
        self.pods: dict[str, PodWorker] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.addresses = [str(netns.NETWORK[i]) for i in netns.POD_ADDRESSES]
        self.in_use: set[str] = set()
        self.next_address = 0
        self.service_env: dict[str, str] = {}
        self.http: aiohttp.ClientSession

    def allocate(self) -> str:
        """The next free pod address, round robin as host-local IPAM hands them out."""
        for step in range(len(self.addresses)):
            address = self.addresses[(self.next_address + step) % len(self.addresses)]
            if address not in self.in_use:
                self.next_address = (self.next_address + step + 1) % len(self.addresses)
                self.in_use.add(address)
                return address
        raise netns.NetworkError("no free pod address")

    def release(self, address: str) -> None:
        self.in_use.discard(address)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as self.http:
            await self._clean()
            await self._register()
            kubernetes = await self.client.get(Service, "kubernetes", namespace="default")
            assert kubernetes.spec is not None
            self.service_env = {
                "KUBERNETES_SERVICE_HOST": str(kubernetes.spec.clusterIP),
                "KUBERNETES_SERVICE_PORT": "443",
            }
            await asyncio.gather(self._heartbeat(), self._watch_pods())

    async def _clean(self) -> None:
        """Containers and namespaces a previous run left: this node starts empty."""
        code, out, _ = await self.docker("ps", "-aq", "--filter", f"label={POD_LABEL}")
        if code == 0 and out:
            await self.docker("rm", "--force", *out.split())
        for name in await asyncio.to_thread(netns.owned):
            if name.startswith(f"{netns.PREFIX}pod-"):
                await asyncio.to_thread(netns.delete, name)

    def _node_status(self) -> dict[str, Any]:
        stamp = now()
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_bytes() // 1024}Ki",
            "pods": str(len(self.addresses)),
            "ephemeral-storage": f"{shutil.disk_usage('/').total // 1024}Ki",
        }

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self.started,
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition(
                    "Ready", "True", "KubeletReady", "the kubelet stand-in is posting ready status"
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": netns.NODE_IP},
                {"type": "Hostname", "address": self.node_name},
            ],
            "nodeInfo": self.node_info,
        }

    async def _register(self) -> None:
        self.started = now()
        code, runtime, _ = await self.docker("version", "--format", "{{.Server.Version}}")
        machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(
            platform.machine(), platform.machine()
        )
        os_release = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        self.node_info = {
            "machineID": Path("/etc/machine-id").read_text().strip()
            if Path("/etc/machine-id").exists()
            else "standin",
            "systemUUID": self.node_name,
            "bootID": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            "kernelVersion": platform.release(),
            "osImage": os_release.get("PRETTY_NAME", "Linux").strip('"'),
            "containerRuntimeVersion": f"docker://{runtime if code == 0 else 'unknown'}",
            "kubeletVersion": self.kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": machine,
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": machine,
                },
            },
        }
        with contextlib.suppress(ApiError):
            await self.client.create(cast(Node, Node.from_dict(node)))
        await self._post_status()

    async def _post_status(self) -> None:
        await self.client.patch(
            Node.Status, self.node_name, {"status": self._node_status()}, patch_type=PatchType.MERGE
        )

    async def _heartbeat(self) -> None:
        node = await self.client.get(Node, self.node_name)
        assert node.metadata is not None
        owner = {
            "apiVersion": "v1",
            "kind": "Node",
            "name": self.node_name,
            "uid": node.metadata.uid,
        }
        while True:
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.node_name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [owner],
                },
                "spec": {
                    "holderIdentity": self.node_name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": _micro_now(),
                },
            }
            try:
                await self.client.apply(
                    cast(Lease, Lease.from_dict(lease)), field_manager=FIELD_MANAGER, force=True
                )
                await self._post_status()
            except ApiError as error:
                LOG.warning("heartbeat: %s", error.status.message)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _watch_pods(self) -> None:
        def retry(error: Exception, count: int) -> OnErrorResult:
            LOG.warning("pod watch: %s; watching again", error)
            return OnErrorResult(OnErrorAction.RETRY, sleep=min(1.0 * count, 5.0))

        async for event, pod in self.client.watch(
            Pod, namespace=ALL_NS, fields={"spec.nodeName": self.node_name}, on_error=retry
        ):
            raw = pod.to_dict()
            uid = raw["metadata"]["uid"]
            worker = self.pods.get(uid)
            if event == "DELETED":
                if worker is not None:
                    self.pods.pop(uid)
                    worker.pod = raw
                    if not worker.terminating:
                        worker.terminating = True
                        self._background(self._forget(worker))
                continue
            if raw["metadata"].get("deletionTimestamp"):
                if worker is None:
                    worker = PodWorker(self, raw)
                    self.pods[uid] = worker
                if not worker.terminating:
                    worker.pod = raw
                    self._background(worker.terminate())
                continue
            if worker is None and (raw.get("status") or {}).get("phase") in (None, "Pending"):
                worker = PodWorker(self, raw)
                self.pods[uid] = worker
                worker.task = asyncio.create_task(worker.run())

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self.tasks.discard)

    async def _forget(self, worker: PodWorker) -> None:
        """A pod removed without graceful termination: remove what is left of it."""
        for state in worker.containers.values():
            for task in state.tasks:
                task.cancel()
        if worker.task is not None:
            worker.task.cancel()
        await worker.remove()


async def _main(args: argparse.Namespace) -> None:
    config = KubeConfig.from_file(args.kubeconfig)
    client = AsyncClient(config=config, field_manager=FIELD_MANAGER)
    kubelet = Kubelet(
        client,
        docker=Docker(args.docker_host),
        node_name=args.node_name,
        pause_image=args.pause_image,
        state=Path(args.state),
        version=args.version,
        logs=Path(args.pod_logs) if args.pod_logs else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    work = asyncio.create_task(kubelet.run())
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    if work in done and work.exception() is not None:
        raise work.exception()  # type: ignore[misc]
    await client.close()


def start(ctx: Context) -> None:
    """Run the stand-in as the node NODE_NAME; ready when the Node is Ready and untainted."""
    started = time.monotonic()
    process = ctx.spawn(
        "kubelet-standin",
        [
            sys.executable,
            "-m",
            "e2e.kubelet",
            f"--kubeconfig={KUBECONFIG}",
            f"--docker-host={ctx.state.docker_host}",
            f"--node-name={NODE_NAME}",
            f"--pause-image={PAUSE_IMAGE}",
            f"--state={STATE / 'kubelet'}",
            f"--pod-logs={LOGS / 'pods'}",
            f"--version={tools.module_info('kubernetes', 'k8s.io/kubernetes')['Version']}",
        ],
        # Python's own name is what /proc shows; the module name tells it from other Pythons.
        executable="e2e.kubelet",
    )

    def node_ready() -> bool:
        node = ctx.client.get(Node, NODE_NAME).to_dict()
        taints = node.get("spec", {}).get("taints") or []
        conditions = node.get("status", {}).get("conditions") or []
        untainted = all(t["key"] != "node.kubernetes.io/not-ready" for t in taints)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return untainted and ready

    ctx.wait(process, node_ready, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The kubelet stand-in of the local cluster.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--docker-host", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--pause-image", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--version", required=True, help="the version the Node reports")
    parser.add_argument("--pod-logs", help="where to keep removed containers' output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per API request otherwise
    Path(args.state).mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(_main(args))
    except (ApiError, DockerError, netns.NetworkError, OSError) as error:
        print(f"kubelet-standin: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
