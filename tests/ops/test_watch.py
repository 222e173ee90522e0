"""`--watch` and `faas watch` against a fake Kubernetes API driven to scale 0 -> 3 -> 0, the
pods terminating before they go, and a fake metrics store with Knative's desired pods."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.context import free_port
from ops import cli, commands
from ops.kubeapi import Pacer
from ops.requester import Work
from ops.watch import READY, TERMINATING, WATCH_TRIES, Sample, Timeline, WatchError, watch_pods
from tests.ops.fake_kube import FakeKube, running_fake_kube
from tests.utils import run_service

NAMESPACE = "hackathon-pi-knative"
SERVICE = "myfirstserverlessapp"
GONE = "terminating"
SCRIPT: list[tuple[float, list[bool | str]]] = [  # (seconds after the watch connected, pods)
    (0.0, [False, False, False]),
    (0.4, [True, False, False]),
    (0.8, [True, True, True]),
    (2.2, [GONE, GONE, GONE]),
    (2.6, []),
]
# One sample per event, (ready, live pods, terminating): pods appear, become ready one by one,
# are deleted (terminating, no longer live), then are gone.
TIMELINE = [
    (0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 3, 0), (1, 3, 0), (2, 3, 0), (3, 3, 0),
    (2, 2, 1), (1, 1, 2), (0, 0, 3), (0, 0, 2), (0, 0, 1), (0, 0, 0),
]  # fmt: skip


class _Driver(threading.Thread):
    """Plays SCRIPT once the watch has connected, so that it sees every step as an event. A
    watch that never connects is a failure: Ctrl-C ends the command if it still runs, and
    ``join`` (called once the command has returned) says so."""

    def __init__(self, fake: FakeKube) -> None:
        super().__init__()
        self.fake = fake
        self.connected = False
        self.returned = threading.Event()  # the command under test has returned

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not (connected := self.fake.watched.wait(0.1)):
            if self.returned.is_set():
                return
            if time.monotonic() > deadline:
                signal.raise_signal(signal.SIGINT)
                return
        self.connected = connected
        started = time.perf_counter()
        for at, ready in SCRIPT:
            time.sleep(max(0.0, started + at - time.perf_counter()))
            self.fake.set_pods(ready)

    def join(self, timeout: float | None = None) -> None:
        self.returned.set()
        super().join(timeout)
        assert self.connected, "the watch never connected to the fake API server"


def _drive(fake: FakeKube) -> _Driver:
    driver = _Driver(fake)
    driver.start()
    return driver


@pytest.fixture
def ctrl_c_back_at_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """Press Ctrl-C, as a user would, once the watch has seen the pods come and go.

    Stopping on what was seen, not after a fixed time, keeps the tests exact on a busy machine.
    """
    seen_pods = False

    async def watch_then_ctrl_c(
        *args: Any, on_sample: Callable[[Sample], None] | None = None, **kwargs: Any
    ) -> Timeline:
        def observe(sample: Sample) -> None:
            nonlocal seen_pods
            if on_sample is not None:
                on_sample(sample)
            if seen_pods and sample.pods + sample.terminating == 0:
                signal.raise_signal(signal.SIGINT)
            seen_pods = seen_pods or sample.pods > 0

        return await watch_pods(*args, on_sample=observe, **kwargs)

    monkeypatch.setattr(commands, "watch_pods", watch_then_ctrl_c)


def test_load_with_watch_records_the_timeline_summary_and_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig),
        run_service() as svc,
    ):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        out = io.StringIO()
        work = Work(url=f"{svc.url}/?in=10000&nap=0&processes=50", concurrency=2, duration=2.0)
        driver = _drive(fake)
        plot = tmp_path / "scaling.png"
        started = time.perf_counter()
        code = commands.run_load(
            work=work, as_json=True, watch=SERVICE, namespace=None, watch_after=60.0,
            plot_path=plot, out=out, err=io.StringIO(),
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        driver.join()
    assert code == 0
    document = json.loads(out.getvalue())
    samples = document["replicas"]["timeline"]
    assert [(s["ready"], s["pods"], s["terminating"]) for s in samples] == TIMELINE
    summary = document["replicas"]["summary"]
    assert summary["peak_ready"] == 3
    assert summary["peak_pods"] == 3
    assert summary["peak_terminating"] == 3
    first_ready = next(s["t"] for s in samples if s["ready"] > 0)
    assert summary["first_ready_seconds"] == first_ready
    assert summary["back_to_zero_seconds"] == samples[TIMELINE.index((0, 0, 3))]["t"]
    assert summary["all_gone_seconds"] == samples[-1]["t"]
    # Times count from the start of the command: in order, and within how long it took.
    assert 0 < first_ready < summary["back_to_zero_seconds"] < summary["all_gone_seconds"]
    assert summary["all_gone_seconds"] <= elapsed
    assert elapsed < 30, "it kept watching after no pod was left, to the end of --watch-after"
    assert fake.selectors
    assert set(fake.selectors) == {f"serving.knative.dev/service={SERVICE}"}
    assert document["report"]["status_codes"] == {"200": document["report"]["requests"]}
    assert plot.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("ctrl_c_back_at_zero")
def test_faas_watch_prints_live_lines_and_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        out = io.StringIO()
        driver = _drive(fake)
        code = commands.run_watch(service=SERVICE, namespace=NAMESPACE, out=out)
        driver.join()
    live, _, summary = out.getvalue().partition(
        "Replica timeline (ready/live pods, terminating apart):\n"
    )
    lines = re.findall(
        r"^ +([0-9.]+) s  ready ([0-9]+)/([0-9]+)  terminating ([0-9]+)$", live, re.MULTILINE
    )
    assert code == 0
    assert [tuple(int(n) for n in line[1:]) for line in lines] == TIMELINE[1:]
    assert "Peak replicas:\t3 ready, 3 pods" in summary
    assert "Knative:" not in summary
    assert f"Back to zero:\t{lines[TIMELINE.index((0, 0, 3)) - 1][0]} s" in summary
    assert f"Last pod gone:\t{lines[-1][0]} s" in summary


@pytest.mark.usefixtures("ctrl_c_back_at_zero")
def test_faas_watch_adds_knatives_desired_and_requested_pods_from_the_metrics_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        fake.scale = {"kn_revision_pods_desired": 3, "kn_revision_pods_requested": 2}
        out = io.StringIO()
        driver = _drive(fake)
        # The namespace comes from the kubeconfig's context, as for the pods.
        code = cli_watch(["watch", SERVICE, "--metrics", fake.url], out)
        driver.join()
    assert code == 0
    assert "  desired 3  requested 2" in out.getvalue()
    assert "Knative:\tdesired 3 pods at the peak, requested 2 (bounded by max-scale)" in (
        out.getvalue()
    )
    scope = f'{{k8s_namespace_name="{NAMESPACE}", kn_service_name="{SERVICE}"}}'
    assert f"sum(kn_revision_pods_desired{scope})" in fake.queries


def cli_watch(argv: list[str], out: io.StringIO) -> int:
    """`faas ARGV` with its standard output into OUT."""
    import contextlib  # noqa: PLC0415

    with contextlib.redirect_stdout(out):
        return cli.main(argv)


def test_watch_with_an_unreachable_metrics_store_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (_, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setenv("METRICS", closed)  # the default of --metrics
        code = cli.main(["watch", SERVICE])
    captured = capsys.readouterr()
    assert code == commands.FAILED
    [line] = captured.err.splitlines()
    assert line.startswith(f"faas: watch: cannot read the metrics store {closed}: ")


@pytest.mark.parametrize(
    ("pods", "back_to_zero"),
    [
        ([0, 1, 0], 2.0),
        ([0, 1, 0, 2], None),  # scaled up again: pods are running at the end
        ([0, 1, 0, 2, 1, 0], 5.0),  # the last time it reached zero
        ([0, 2, 1], None),
        ([0], None),  # never above zero
    ],
)
def test_back_to_zero_is_reported_only_when_the_timeline_ends_at_zero(
    pods: list[int], back_to_zero: float | None
) -> None:
    timeline = Timeline()
    for t, count in enumerate(pods):
        timeline.pods = {f"pod-{i}": READY for i in range(count)}
        timeline.record(float(t))
    assert timeline.summary()["back_to_zero_seconds"] == back_to_zero
    out = io.StringIO()
    commands.print_timeline(timeline, out)
    shown = "not observed" if back_to_zero is None else f"{back_to_zero:.1f} s"
    assert f"Back to zero:\t{shown}\n" in out.getvalue()


def test_terminating_pods_are_not_live_but_keep_the_service_from_being_gone() -> None:
    timeline = Timeline()
    for t, pods in enumerate([{"a": READY}, {"a": TERMINATING}, {}]):
        timeline.pods = dict(pods)
        timeline.record(float(t))
    assert [s.counts[:3] for s in timeline.samples] == [(1, 1, 0), (0, 0, 1), (0, 0, 0)]
    summary = timeline.summary()
    assert (summary["back_to_zero_seconds"], summary["all_gone_seconds"]) == (1.0, 2.0)


def _unreadable_kubeconfig(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A kubeconfig path of the given kind and the reason faas should give for it."""
    path = tmp_path / "kubeconfig"
    if kind == "missing":
        return path, "no such file"
    if kind == "not YAML":
        path.write_text("clusters: [\n")
        return path, "not YAML: "
    path.write_text("- just\n- a list\n")
    return path, "not a kubeconfig"


@pytest.mark.parametrize("kind", ["missing", "not YAML", "not a kubeconfig"])
def test_watch_with_an_unreadable_kubeconfig_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path, reason = _unreadable_kubeconfig(tmp_path, kind)
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert cli.main(["watch", SERVICE]) == commands.FAILED != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"faas: watch: cannot read kubeconfig {path}: {reason}")


def test_load_with_an_unreadable_kubeconfig_prints_the_report_then_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, reason = _unreadable_kubeconfig(tmp_path, "missing")
    monkeypatch.setenv("KUBECONFIG", str(path))
    plot = tmp_path / "load.png"
    with run_service() as svc:
        started = time.perf_counter()
        code = cli.main(["load", "-n", "20", "-c", "2", "--watch", SERVICE, "--watch-after", "60",
                         "--plot", str(plot), f"{svc.url}/healthz"])  # fmt: skip
        elapsed = time.perf_counter() - started
    captured = capsys.readouterr()
    assert code == commands.WATCH_FAILED != 0
    assert "Summary:" in captured.out
    assert "Latency distribution:" in captured.out
    assert "[200]\t20 responses" in captured.out
    assert "Replica" not in captured.out
    assert captured.err.splitlines() == [
        f"plot written to {plot}",
        f"faas: watch: cannot read kubeconfig {path}: {reason}",
    ]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert elapsed < 60, "it waited --watch-after for a watch that had failed"


def _kubeconfig_for(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "unreachable-kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
        "current-context": "ctx",
    }))  # fmt: skip
    return path


def test_watch_of_an_unreachable_api_server_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig_for(tmp_path, server)))
    assert cli.main(["watch", SERVICE]) == commands.FAILED
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"faas: watch: cannot reach the API server {server}: connection refused"
    ]


def test_load_watching_an_unreachable_api_server_prints_its_report_then_one_line_and_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig_for(tmp_path, server)))
    with run_service() as svc:
        code = cli.main(["load", "-n", "10", "-c", "2", "--watch", SERVICE, f"{svc.url}/healthz"])
    captured = capsys.readouterr()
    assert code == commands.WATCH_FAILED
    assert "[200]\t10 responses" in captured.out
    assert captured.err.splitlines() == [
        f"faas: watch: cannot reach the API server {server}: connection refused"
    ]


FORBIDDEN = (
    "faas: watch: the API server {url} answered 403 Forbidden to watching pods in namespace "
    f'{NAMESPACE} (pods is forbidden: User "viewer" cannot watch resource "pods" in API '
    f'group "" in the namespace "{NAMESPACE}"): the credentials of kubeconfig context fake '
    f"lack the list and watch verbs on pods in namespace {NAMESPACE}"
)


def test_a_watch_refused_403_stops_at_once_naming_what_the_credentials_lack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        fake.failure = 403
        assert cli.main(["watch", SERVICE]) == commands.FAILED
    assert capsys.readouterr().err.splitlines() == [FORBIDDEN.format(url=fake.url)]
    assert len(fake.watch_requests) == 1


@pytest.mark.parametrize("answer_after", [0.0, 2.0])
def test_load_with_a_watch_refused_403_prints_its_report_then_the_refusal_and_exit_3(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer_after: float,
) -> None:
    """Also when the API server takes 2 s to refuse: ten requests take a few milliseconds, and
    the load is over before the refusal comes."""
    with (
        running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig),
        run_service() as svc,
    ):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        fake.failure, fake.answer_after = 403, answer_after
        code = cli.main(["load", "-n", "10", "-c", "2", "--watch", SERVICE, f"{svc.url}/healthz"])
    captured = capsys.readouterr()
    assert code == commands.WATCH_FAILED
    assert "[200]\t10 responses" in captured.out
    assert "Replica" not in captured.out
    assert captured.err.splitlines() == [FORBIDDEN.format(url=fake.url)]


@pytest.mark.parametrize("failure", [500, 401, "empty", "garbage"])
def test_a_watch_never_sends_more_than_a_request_a_second_whatever_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: int | str
) -> None:
    """client-go's backoff (800 ms doubling, jitter up to as much again) lets at most three
    requests through in the first 2.4 s; 401 ends the watch after the first."""
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        fake.failure = failure

        async def watch_for(seconds: float) -> None:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(seconds, stop.set)
            with contextlib.suppress(WatchError):
                await watch_pods(SERVICE, None, Timeline(), stop)

        asyncio.run(watch_for(2.4))
        sent = list(fake.watch_requests)
    assert 1 <= len(sent) <= (1 if failure == 401 else 3), sent
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert all(gap >= 0.75 for gap in gaps), gaps


@pytest.mark.parametrize(
    ("failure", "problem"),
    [
        (
            500,
            "answered 500 Internal Server Error to watching pods in namespace "
            f"{NAMESPACE} (etcdserver: request timed out)",
        ),
        ("garbage", "sent no watch event: "),
    ],
)
def test_a_failing_watch_gives_up_after_a_bounded_number_of_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: int | str, problem: str
) -> None:
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        fake.failure = failure
        timeline = Timeline()
        notes: list[str] = []
        quick = Pacer(initial=0.01, cap=0.02)
        with pytest.raises(WatchError) as caught:
            asyncio.run(watch_pods(SERVICE, None, timeline, asyncio.Event(), pacer=quick,
                                   on_note=notes.append))  # fmt: skip
    message = str(caught.value)
    assert message.startswith(f"the API server {fake.url} {problem}"), message
    assert message.endswith(f"; gave up after {WATCH_TRIES} tries")
    assert len(fake.watch_requests) == WATCH_TRIES
    assert len(notes) == WATCH_TRIES - 1
    assert all(note.endswith("; trying again") for note in notes)
    assert [n for _, n in timeline.notes] == notes


def test_a_metrics_store_that_stops_answering_makes_knatives_numbers_unknown_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        fake.scale = {"kn_revision_pods_desired": 3, "kn_revision_pods_requested": 2}
        timeline = Timeline()
        notes: list[str] = []

        async def watch() -> None:
            stop = asyncio.Event()

            def seen(sample: Sample) -> None:
                if sample.desired == 3:
                    fake.metrics_down = True  # the store goes away after its first answer
                if fake.metrics_down and sample.desired is None:
                    stop.set()

            await watch_pods(SERVICE, None, timeline, stop, on_sample=seen, on_note=notes.append,
                             metrics=fake.url)  # fmt: skip

        asyncio.run(asyncio.wait_for(watch(), 30))
    assert [s.desired for s in timeline.samples if s.desired is not None] == [3]
    assert timeline.samples[-1].counts[3:] == (None, None)
    assert notes == [
        f"the metrics store stopped answering (metrics store {fake.url}: down): desired and "
        "requested unknown until it answers again"
    ]
    out = io.StringIO()
    commands.print_timeline(timeline, out)
    assert f"stopped answering (metrics store {fake.url}: down)" in out.getvalue()


def test_load_report_survives_any_failure_of_the_watch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*_: object, **__: object) -> Timeline:
        raise RuntimeError("a bug in the watch")

    monkeypatch.setattr(commands, "watch_pods", broken)
    with run_service() as svc:
        code = cli.main(["load", "-n", "10", "-c", "2", "--watch", SERVICE, f"{svc.url}/healthz"])
    captured = capsys.readouterr()
    assert code == commands.WATCH_FAILED
    assert "[200]\t10 responses" in captured.out
    assert captured.err.splitlines() == ["faas: watch: RuntimeError: a bug in the watch"]
