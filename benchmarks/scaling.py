"""Watch it scale, measured: the original's load (11 workers, `?in=100000&nap=9&processes=500`)
on the local cluster, from zero pods, on the bosun stack's Service; medians of 3 runs.

    .venv/bin/python -m benchmarks.scaling [--runs 3] [--seconds 60]

Part of `make bench` when a local cluster runs (`make cluster-up`); each run deploys the
Service into a namespace of its own, waits until it is at zero pods, loads it with `faas load`'s
engine while watching its pods, and waits until no pod is left. Every figure is measured in the
run against its own baseline: the first answer against the nap it includes, a pod's start with
nine others against a pod's start alone (the revision's first pod, at deploy), the last 30 s of
latency against the first 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import on_error_retry

from benchmarks.on_cluster import cluster_or_skip
from benchmarks.output import table
from e2e import node, process
from e2e.context import State
from e2e.poll import until_async
from ops import kubeapi
from ops.requester import Result, Run, Work, execute
from tests.e2e.kube import PROJECT, Kube, app_image_ref
from tests.e2e.test_serving import manifests

NAP, CONCURRENCY, MAX_SCALE = 9, 11, 10
QUERY = f"in=100000&nap={NAP}&processes=500"
LABEL = "serving.knative.dev/service"


@dataclass
class PodClock:
    """When each pod was first seen and first Ready, on this process's clock."""

    created: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)  # deletion asked: terminating
    gone: dict[str, float] = field(default_factory=dict)  # removed from the API
    peak_rss: float = 0.0  # the cluster's resident memory when ten pods were Ready

    def live(self) -> set[str]:
        return set(self.created) - set(self.deleted)

    def all_gone(self) -> bool:
        return set(self.created) == set(self.gone)

    def ready_count(self) -> int:
        return len(set(self.ready) & self.live())

    def start_seconds(self, pods: list[str]) -> list[float]:
        return [self.ready[p] - self.created[p] for p in pods if p in self.ready]


def cluster_rss_mib() -> float:
    """Every process of the cluster and every process below them, and the pods: containerd's
    shims and their containers (which containerd starts apart from itself), counted once."""
    state = State.load()
    pids = {p for each in (state.processes if state else []) for p in process.descendants(each.pid)}
    pids |= set(node.pods())
    return sum(process.rss_bytes(pid) for pid in pids) / 2**20


async def _watch(client: AsyncClient, namespace: str, clock: PodClock) -> None:
    async for event, pod in client.watch(
        Pod, namespace=namespace, labels={LABEL: PROJECT}, on_error=on_error_retry
    ):
        now = time.perf_counter()
        name = pod.metadata.name if pod.metadata and pod.metadata.name else ""
        clock.created.setdefault(name, now)
        conditions = (pod.status.conditions if pod.status else None) or []
        terminating = pod.metadata is not None and pod.metadata.deletionTimestamp is not None
        if event == "DELETED":
            clock.gone.setdefault(name, now)
        if event == "DELETED" or terminating:
            clock.deleted.setdefault(name, now)
        elif any(c.type == "Ready" and c.status == "True" for c in conditions):
            clock.ready.setdefault(name, now)
            if clock.ready_count() == MAX_SCALE and not clock.peak_rss:
                clock.peak_rss = cluster_rss_mib()


@dataclass
class Measured:
    first_answer: float  # load start -> first 200
    ten_ready: float | None  # load start -> ten pods Ready
    to_zero: float | None  # load end -> no pod left
    early: tuple[float, float]  # p50, p99 of the requests started in the first 30 s
    late: tuple[float, float]  # ... and in the last 30 s
    alone: float  # the revision's first pod, created alone: creation -> Ready
    with_nine: float  # median of the load's ten pods: creation -> Ready
    rss_mib: float
    failed: int


def _percentiles(results: list[Result]) -> tuple[float, float]:
    durations = sorted(r.duration for r in results)
    if not durations:
        return (float("nan"), float("nan"))
    return durations[len(durations) // 2], durations[
        min(len(durations) - 1, len(durations) * 99 // 100)
    ]


async def _one_run(kube: Kube, image: str, namespace: str, seconds: float) -> Measured:
    # Paced as client-go paces a watch: lightkube's retries then never make a hot loop.
    client = kubeapi.client(kubeapi.Pacer(), kubeconfig=kube.env["KUBECONFIG"])
    clock = PodClock()
    watching = asyncio.create_task(_watch(client, namespace, clock))
    try:
        documents = manifests(image, namespace=namespace)
        kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
        await asyncio.to_thread(kube.wait_ready, PROJECT, namespace)
        # The revision's first pod, started alone (initial scale 1); then it goes idle.
        await _until(lambda: len(clock.ready) == 1, 120, "the first pod Ready")
        (first,) = clock.ready
        alone = clock.start_seconds([first])[0]
        # Gone, not only terminating: a terminating pod can still answer, and the first answer
        # must come from a pod this load started.
        await _until(clock.all_gone, 300, "zero pods before the load")
        before = set(clock.created)
        host = f"{PROJECT}.{namespace}.example.com"
        work = Work(url=f"http://{kube.gateway}/?{QUERY}", host=host, concurrency=CONCURRENCY,
                    duration=seconds, timeout=60)  # fmt: skip
        run = await execute(Run(work))
        load_end = run.started + run.elapsed
        await _until(clock.all_gone, 300, "no pod left")
        load_pods = [p for p in clock.created if p not in before]
        ready_times = sorted(clock.ready[p] for p in load_pods if p in clock.ready)
        ok = [r for r in run.results if r.status == 200]
        gone = max(clock.gone[p] for p in load_pods)
        return Measured(
            first_answer=min(r.start + r.duration for r in ok),
            ten_ready=(
                ready_times[MAX_SCALE - 1] - run.started
                if len(ready_times) >= MAX_SCALE else None
            ),
            to_zero=gone - load_end,
            early=_percentiles([r for r in ok if r.start < 30]),
            # Requests start until the load's duration ends (the last ones then take their nap).
            late=_percentiles([r for r in ok if r.start >= work.duration - 30]),
            alone=alone,
            with_nine=statistics.median(clock.start_seconds(load_pods)),
            rss_mib=clock.peak_rss,
            failed=len(run.results) - len(ok),
        )  # fmt: skip
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await client.close()
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    async def checked() -> bool:
        return check()

    await until_async(checked, timeout=timeout, what=what, initial=0.05, cap=0.2)


def scaling(runs: int = 3, seconds: float = 60.0) -> None:
    if (kube := cluster_or_skip("scaling")) is None:
        return
    image = app_image_ref(kube)
    measured = [
        asyncio.run(_one_run(kube, image, f"bench-scale-{run}", seconds)) for run in range(runs)
    ]

    def median(values: list[float | None]) -> float:
        known = [v for v in values if v is not None]
        return statistics.median(known) if len(known) == len(values) else float("nan")

    first = median([m.first_answer for m in measured])
    ten = median([m.ten_ready for m in measured])
    zero = median([m.to_zero for m in measured])
    early50, early99 = (median([m.early[i] for m in measured]) for i in (0, 1))
    late50, late99 = (median([m.late[i] for m in measured]) for i in (0, 1))
    alone, nine = median([m.alone for m in measured]), median([m.with_nine for m in measured])
    failed = sum(m.failed for m in measured)
    rows = [
        ["load start to the first 200 (nap 9 s)", f"{first:.1f}", f"{first - NAP:.1f} over the nap",
         f"<= {NAP + 2} s: {'met' if first <= NAP + 2 else 'NOT met'}"],
        ["load start to 10 pods Ready", f"{ten:.1f}", "",
         f"<= 10 s: {'met' if ten <= 10 else 'NOT met'}"],
        ["load end to no pod left", f"{zero:.1f}", "", ""],
        ["latency p50, first 30 s / last 30 s", f"{early50:.2f} / {late50:.2f}",
         f"{late50 / early50:.2f}", ""],
        ["latency p99, first 30 s / last 30 s", f"{early99:.2f} / {late99:.2f}",
         f"{late99 / early99:.2f}", ""],
        ["pod creation to Ready: alone / with 9 others", f"{alone:.2f} / {nine:.2f}",
         f"{nine / alone:.2f}", ""],
        ["failed requests (all runs)", str(failed), "",
         f"0: {'met' if failed == 0 else 'NOT met'}"],
        ["cluster resident memory at 10 Ready pods (MiB)",
         f"{median([m.rss_mib for m in measured]):.0f}", "", ""],
    ]  # fmt: skip
    title = f"watch it scale ({seconds:.0f} s of load, median of {runs}), s"
    table(f"| {title} | value | ratio | goal |", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    scaling(args.runs, args.seconds)


if __name__ == "__main__":
    main()
