"""A small fake Kubernetes API on 127.0.0.1: pod list and watch for one label selector, and a
Prometheus query API answering Knative's desired and requested pods.

The test drives it (``set_pods``, ``scale``) to scale a Knative Service's pods up and down;
watchers get ADDED / MODIFIED / DELETED events as the real API server sends them. ``failure``
makes every watch fail instead (an HTTP status with a Status body, a stream that ends at once,
or lines that are not watch events); ``metrics_down`` makes the query API answer 503.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from e2e.context import free_port

LABEL = "serving.knative.dev/service"


def _pod(name: str, namespace: str, service: str, state: str, version: int) -> dict[str, Any]:
    """A pod in STATE: "ready", "not ready", or "terminating" (deleted, draining)."""
    ready = state == "ready"
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {LABEL: service},
        "resourceVersion": str(version),
    }
    if state == "terminating":
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "status": {
            "phase": "Running" if state != "not ready" else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def _status(code: int) -> dict[str, Any]:
    """The Status an API server sends with an error."""
    reasons = {403: "Forbidden", 401: "Unauthorized", 500: "InternalError"}
    message = {
        403: 'pods is forbidden: User "viewer" cannot watch resource "pods" in API group "" '
        'in the namespace "hackathon-pi-knative"',
        401: "Unauthorized",
    }.get(code, "etcdserver: request timed out")
    return {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
        "reason": reasons.get(code, "InternalError"), "code": code,
    }  # fmt: skip


class FakeKube:
    def __init__(self, namespace: str, service: str) -> None:
        self.namespace = namespace
        self.service = service
        self.pods: dict[str, dict[str, Any]] = {}
        self.version = 1
        self.watchers: list[asyncio.Queue[dict[str, Any]]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.selectors: list[str] = []
        self.watched = threading.Event()  # set once a watch has connected
        self.url = ""
        self.scale = {"kn_revision_pods_desired": 0, "kn_revision_pods_requested": 0}
        self.queries: list[str] = []
        self.failure: int | str | None = None  # an HTTP status, "empty" or "garbage"
        self.answer_after = 0.0  # seconds each watch request waits for its answer
        self.watch_requests: list[float] = []  # when each watch request arrived (monotonic)
        self.metrics_down = False

    def _matches(self, request: Request) -> bool:
        selector = request.query_params.get("labelSelector", "")
        self.selectors.append(selector)
        return (
            request.path_params["namespace"] == self.namespace
            and selector == f"{LABEL}={self.service}"
        )

    async def pods_endpoint(self, request: Request) -> Response:
        if request.query_params.get("watch") not in ("true", "1"):
            items = list(self.pods.values()) if self._matches(request) else []
            return JSONResponse(
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.version)},
                    "items": items,
                }
            )
        self.watch_requests.append(time.monotonic())
        await asyncio.sleep(self.answer_after)
        if isinstance(self.failure, int):
            return JSONResponse(_status(self.failure), status_code=self.failure)
        if self.failure is not None:
            body = b"" if self.failure == "empty" else b"<html>not a watch</html>\n"
            return Response(body, media_type="application/json")
        if not self._matches(request):
            return JSONResponse({"kind": "Status", "code": 400}, status_code=400)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for pod in self.pods.values():
            queue.put_nowait({"type": "ADDED", "object": pod})
        self.watchers.append(queue)
        self.watched.set()

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    event = await queue.get()
                    yield (json.dumps(event) + "\n").encode()
            finally:
                self.watchers.remove(queue)

        return StreamingResponse(stream(), media_type="application/json")

    def set_pods(self, states: list[bool | str]) -> None:
        """Make the service have ``len(states)`` pods, the i-th ready (True), not ready (False)
        or "terminating" (thread-safe)."""
        assert self.loop is not None
        done = threading.Event()

        def apply() -> None:
            named: dict[bool | str, str] = {True: "ready", False: "not ready"}
            prefix = f"{self.service}-00001-deployment"
            wanted = {f"{prefix}-{i}": named.get(s, str(s)) for i, s in enumerate(states)}
            for name in list(self.pods):
                if name not in wanted:
                    self.version += 1
                    pod = self.pods.pop(name)
                    pod["metadata"]["resourceVersion"] = str(self.version)
                    self._publish("DELETED", pod)
            for name, state in wanted.items():
                self.version += 1
                kind = "MODIFIED" if name in self.pods else "ADDED"
                pod = _pod(name, self.namespace, self.service, state, self.version)
                old = self.pods.get(name, {})
                same = old.get("status") == pod["status"] and "deletionTimestamp" not in (
                    set(old.get("metadata", {})) ^ set(pod["metadata"])
                )
                if not same:
                    self.pods[name] = pod
                    self._publish(kind, pod)
            done.set()

        self.loop.call_soon_threadsafe(apply)
        assert done.wait(5), "the fake API server did not apply the pods within 5 s"

    def _publish(self, kind: str, pod: dict[str, Any]) -> None:
        for queue in self.watchers:
            queue.put_nowait({"type": kind, "object": pod})

    async def query_endpoint(self, request: Request) -> Response:
        """Prometheus's instant query of sum(METRIC{...}) for the service's revisions."""
        query = request.query_params.get("query", "")
        self.queries.append(query)
        if self.metrics_down:
            return JSONResponse({"status": "error", "error": "down"}, status_code=503)
        scope = f'{{k8s_namespace_name="{self.namespace}", kn_service_name="{self.service}"}})'
        result = [
            {"metric": {}, "value": [time.time(), str(value)]}
            for metric, value in self.scale.items()
            if query == f"sum({metric}{scope}"
        ]
        return JSONResponse(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/namespaces/{namespace}/pods", self.pods_endpoint),
                Route("/api/v1/query", self.query_endpoint),
            ]
        )


@contextmanager
def running_fake_kube(
    tmp_path: Path, namespace: str, service: str
) -> Iterator[tuple[FakeKube, Path]]:
    """Serve a FakeKube on a free loopback port; yields it and a kubeconfig pointing at it
    (its URL is the Prometheus API's too: ``fake.url``)."""
    fake = FakeKube(namespace, service)
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )

    def serve() -> None:
        async def main() -> None:
            fake.loop = asyncio.get_running_loop()
            await server.serve()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the fake API server stopped while starting"
        assert time.monotonic() < deadline, "the fake API server did not start within 10 s"
        time.sleep(0.02)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    try:
        yield fake, kubeconfig
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(10)
