"""From zero: the first answer of a Knative Service that has no pod, the bosun Service's against
Knative's own scale-from-zero benchmark app (``helloworld``, from the pinned knative.dev/serving
module's test images, the app test/performance/benchmarks/scale-from-zero measures), all
deployed the same way in the same run and started in turn. Two more Services run the app's
image with another command: the bare Starlette + uvicorn app (benchmarks/bare_app.py) and the
floor (the bare app after importing the service's libraries, benchmarks/floor_app.py), so that
the table shows what Python and the design card's libraries cost from zero, apart from the
service's own code.

    .venv/bin/python -m benchmarks.fromzero [--starts 5]

Part of `make bench` when a local cluster runs (`make cluster-up`; helloworld is built by
`make tools`). Before each start the Services have no pod at all (every pod gone from the API,
not only terminating); then one request goes through the gateway and is timed to its answer.
The table gives each median, its ratio to helloworld's and the goal; a second table says where
the time went, from what a watch of the pods and of the revision's endpoints saw, counted from
the request (each milestone's median over the starts; Ready and the endpoints can come after the
answer: queue-proxy's own probe lets the activator send the request before the kubelet's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import on_error_retry

from benchmarks import bare_app, floor_app
from benchmarks.on_cluster import cluster_or_skip
from benchmarks.output import table
from e2e import images, tools
from e2e.poll import until_async
from ops import kubeapi
from tests.e2e.kube import PROJECT, Kube, app_image_ref
from tests.e2e.test_serving import manifests

NAMESPACE = "bench-zero"
HELLOWORLD = "helloworld"
BARE = "bare-starlette"
FLOOR = "starlette-floor"
SERVICES = (PROJECT, HELLOWORLD, BARE, FLOOR)
NAMES = {PROJECT: "bosun Service", HELLOWORLD: "helloworld", BARE: "bare Starlette app",
         FLOOR: "floor: bare + libraries"}  # fmt: skip
PATHS = {PROJECT: "/?in=10000&nap=0&processes=50", HELLOWORLD: "/", BARE: "/", FLOOR: "/"}
GOAL = 1.1  # the bosun Service's first answer from zero, at most this times helloworld's
LABEL = "serving.knative.dev/service"
# What the watches see of a pod, in the order it happens; then the request's own milestones.
POD_MARKS = ("created", "scheduled", "sandbox", "containers started", "ready")
MARKS = (*POD_MARKS, "in endpoints", "first byte", "answer")


def helloworld_image(kube: Kube) -> str:
    """Knative's helloworld, an image of its one binary as the cluster's images of Knative's
    commands are made, pushed to the cluster's registry; its reference by digest."""
    tag = f"{kube.registry}/knative-serving/helloworld:bench"
    with tempfile.TemporaryDirectory() as directory:
        archive = Path(directory) / "helloworld.tar"
        archive.write_bytes(images.binary_archive(tools.path("knative-helloworld"), "/ko-app/hw"))
        kube.docker("import", "--change", 'ENTRYPOINT ["/ko-app/hw"]', "--change",
                    "USER 65532", str(archive), tag)  # fmt: skip
    pushed = kube.docker("push", tag).stdout
    digest = next(word for word in pushed.split() if word.startswith("sha256:"))
    return f"{tag.rsplit(':', 1)[0]}@{digest}"


def python_program(libraries: bool) -> str:
    """The bare app's source, for ``python -c`` in the app's image (which holds the service
    only), after importing the floor's libraries when LIBRARIES is true, as floor_app does."""
    source = Path(bare_app.__file__).read_text(encoding="utf-8")
    source = source.replace("from __future__ import annotations\n", "")  # must come first
    names = [name for group in floor_app.LIBRARIES.values() for name in group]
    imports = "".join(f"import {name}\n" for name in names) if libraries else ""
    return imports + source


def services(app: str, helloworld: str) -> list[dict[str, Any]]:
    """The Knative Services as the bosun stack renders them, in NAMESPACE, with a 6 s window
    so that each is back at zero soon after its start; helloworld differs only by its image,
    the bare app and the floor only by their command and the readiness probe's path."""

    def service(name: str, image: str) -> dict[str, Any]:
        rendered = manifests(image, serviceName=name, namespace=NAMESPACE, window="6s")
        return next(d for d in rendered if d["kind"] == "Service")

    documents = manifests(app, serviceName=PROJECT, namespace=NAMESPACE, window="6s")
    documents.append(service(HELLOWORLD, helloworld))
    for name, libraries in ((BARE, False), (FLOOR, True)):
        python = service(name, app)
        container = python["spec"]["template"]["spec"]["containers"][0]
        container["command"] = ["python", "-c", python_program(libraries)]
        container["readinessProbe"]["httpGet"]["path"] = "/healthz"  # the bare app's one probe
        documents.append(python)
    return documents


def pod_marks(pod: Pod) -> set[str]:
    """The milestones a pod has reached, as the API server says."""
    status = pod.status
    conditions = {c.type: c.status for c in (status.conditions if status else None) or []}
    reached = {"created"}
    for mark, condition in (("scheduled", "PodScheduled"), ("sandbox", "PodReadyToStartContainers"),
                            ("ready", "Ready")):  # fmt: skip
        if conditions.get(condition) == "True":
            reached.add(mark)
    containers = (status.containerStatuses if status else None) or []
    if containers and all(c.state and c.state.running for c in containers):
        reached.add("containers started")
    return reached


@dataclass
class Watched:
    """What the watches saw, on this process's clock: each pod's milestones, when it was gone,
    and when each service's revision first had a ready endpoint."""

    pods: dict[str, str] = field(default_factory=dict)  # pod -> its service
    marks: dict[str, dict[str, float]] = field(default_factory=dict)
    gone: dict[str, float] = field(default_factory=dict)
    endpoints: dict[str, float] = field(default_factory=dict)  # service -> first ready address

    def none_left(self) -> bool:
        return set(self.pods) == set(self.gone)

    def pod_after(self, service: str, since: float) -> str | None:
        return next((p for p, s in self.pods.items() if s == service
                     and self.marks[p]["created"] >= since), None)  # fmt: skip


async def _watch_pods(client: AsyncClient, watched: Watched) -> None:
    async for event, pod in client.watch(Pod, namespace=NAMESPACE, on_error=on_error_retry):
        now = time.perf_counter()
        name = pod.metadata.name if pod.metadata and pod.metadata.name else ""
        service = ((pod.metadata.labels if pod.metadata else None) or {}).get(LABEL)
        if service not in SERVICES:
            continue
        watched.pods.setdefault(name, service)
        marks = watched.marks.setdefault(name, {})
        for mark in pod_marks(pod):
            marks.setdefault(mark, now)
        if event == "DELETED":
            watched.gone.setdefault(name, now)


async def _watch_endpoints(client: AsyncClient, watched: Watched) -> None:
    async for _, slice_ in client.watch(EndpointSlice, namespace=NAMESPACE,
                                        on_error=on_error_retry):  # fmt: skip
        owner = ((slice_.metadata.labels if slice_.metadata else None) or {}).get(
            "kubernetes.io/service-name", ""
        )
        service = next((s for s in SERVICES if owner == f"{s}-00001-private"), None)
        ready = any(e.conditions and e.conditions.ready for e in slice_.endpoints or [])
        if service is not None and ready:
            watched.endpoints[service] = time.perf_counter()
        elif service is not None:
            watched.endpoints.pop(service, None)


@dataclass(frozen=True)
class Start:
    service: str
    seconds: float  # the request sent to its answer, read whole
    marks: dict[str, float]  # each milestone, seconds after the request was sent


async def _start(kube: Kube, watched: Watched, service: str) -> Start:
    async def none_left() -> bool:
        return watched.none_left()

    await until_async(none_left, timeout=300, what="no pod left", initial=0.1, cap=0.5)
    watched.endpoints.pop(service, None)
    host = f"{service}.{NAMESPACE}.example.com"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        sent = time.perf_counter()
        async with session.get(f"http://{kube.gateway}{PATHS[service]}",
                               headers={"Host": host}) as response:  # fmt: skip
            first_byte = time.perf_counter()
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{service}: HTTP {response.status} from zero")
        answered = time.perf_counter()

    async def seen_whole() -> bool:
        """The pod Ready and in the endpoints: with queue-proxy's own probe the activator
        can send the request before the kubelet reports either."""
        pod = watched.pod_after(service, sent)
        return pod is not None and "ready" in watched.marks[pod] and service in watched.endpoints

    with contextlib.suppress(TimeoutError):
        await until_async(seen_whole, timeout=30, what="the pod Ready and in the endpoints")
    pod = watched.pod_after(service, sent)
    marks = {m: t - sent for m, t in (watched.marks.get(pod, {}) if pod else {}).items()}
    if service in watched.endpoints:
        marks["in endpoints"] = watched.endpoints[service] - sent
    marks.update({"first byte": first_byte - sent, "answer": answered - sent})
    return Start(service, answered - sent, marks)


async def measure(kube: Kube, starts: int) -> list[Start]:
    """STARTS starts of each service, in turn, each from no pod at all."""
    app, helloworld = app_image_ref(kube), helloworld_image(kube)
    client = kubeapi.client(kubeapi.Pacer(), kubeconfig=kube.env["KUBECONFIG"])
    watched = Watched()
    watches = [asyncio.create_task(_watch_pods(client, watched)),
               asyncio.create_task(_watch_endpoints(client, watched))]  # fmt: skip
    try:
        kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(services(app, helloworld)))
        for service in SERVICES:
            await asyncio.to_thread(kube.wait_ready, service, NAMESPACE)
        return [await _start(kube, watched, service)
                for _ in range(starts) for service in SERVICES]  # fmt: skip
    finally:
        for watch in watches:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await client.close()
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def report(measured: list[Start]) -> None:
    by_service = {s: [m for m in measured if m.service == s] for s in SERVICES}
    medians = {s: statistics.median(m.seconds for m in by_service[s]) for s in SERVICES}
    runs = len(by_service[PROJECT])

    def row(service: str) -> list[str]:
        ratio = medians[service] / medians[HELLOWORLD]
        goal = f"<= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}" if service == PROJECT else ""
        return [NAMES[service], f"{medians[service]:.3f}", f"{ratio:.2f}", goal]

    table(
        f"| first answer from zero, GET through the gateway, no pod at the start (median of "
        f"{runs} starts each, in turn) | seconds | ratio to helloworld | goal |",
        [row(service) for service in (PROJECT, FLOOR, BARE, HELLOWORLD)],
    )

    def cell(service: str, mark: str) -> str:
        values = [m.marks[mark] for m in by_service[service] if mark in m.marks]
        return "-" if not values else f"{statistics.median(values):.3f}"

    table(
        f"| where the time goes: each milestone, seconds after the request (median of the "
        f"{runs} starts) | {' | '.join(NAMES[s] for s in SERVICES)} |",
        [[mark, *(cell(service, mark) for service in SERVICES)] for mark in MARKS],
    )


def from_zero(starts: int = 5) -> None:
    if (kube := cluster_or_skip("from zero", "knative-helloworld")) is not None:
        report(asyncio.run(measure(kube, starts)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="starts of each service")
    args = parser.parse_args()
    from_zero(args.starts)


if __name__ == "__main__":
    main()
