"""`--watch` and `faas watch` against a fake Kubernetes API driven to scale 0 -> 3 -> 0."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from pathlib import Path

import pytest

from ops import commands
from ops.requester import Work
from tests.ops.fake_kube import running_fake_kube
from tests.utils import run_service

NAMESPACE = "hackathon-pi-knative"
SERVICE = "myfirstserverlessapp"
SCRIPT = [  # (seconds after the start, readiness of each pod)
    (0.4, [False, False, False]),
    (0.8, [True, False, False]),
    (1.2, [True, True, True]),
    (2.6, []),
]


def _drive(fake: object, started: float) -> threading.Thread:
    def play() -> None:
        for at, ready in SCRIPT:
            time.sleep(max(0.0, started + at - time.perf_counter()))
            fake.set_pods(ready)  # type: ignore[attr-defined]

    thread = threading.Thread(target=play)
    thread.start()
    return thread


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
        driver = _drive(fake, time.perf_counter())
        plot = tmp_path / "scaling.png"
        code = commands.run_load(
            work=work, as_json=True, watch=SERVICE, namespace=None, watch_after=1.5,
            plot_path=plot, out=out, err=io.StringIO(),
        )  # fmt: skip
        driver.join()
    assert code == 0
    document = json.loads(out.getvalue())
    timeline = [(s["ready"], s["total"]) for s in document["replicas"]["timeline"]]
    # One sample per event: pods appear, become ready one by one, then are deleted.
    assert timeline == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 3),
        (2, 3),
        (3, 3),
        (2, 2),
        (1, 1),
        (0, 0),
    ]
    summary = document["replicas"]["summary"]
    assert summary["peak_ready"] == 3
    assert summary["peak_pods"] == 3
    assert 0.7 <= summary["first_ready_seconds"] <= 1.2
    assert 2.5 <= summary["back_to_zero_seconds"] <= 3.2
    assert fake.selectors
    assert set(fake.selectors) == {f"serving.knative.dev/service={SERVICE}"}
    assert document["report"]["status_codes"] == {"200": document["report"]["requests"]}
    assert plot.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_faas_watch_prints_live_lines_and_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_fake_kube(tmp_path, NAMESPACE, SERVICE) as (fake, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        out = io.StringIO()
        started = time.perf_counter()
        driver = _drive(fake, started)
        stopper = threading.Timer(3.2, lambda: signal.raise_signal(signal.SIGINT))
        stopper.start()
        code = commands.run_watch(service=SERVICE, namespace=NAMESPACE, out=out)
        driver.join()
    text = out.getvalue()
    assert code == 0
    assert "ready 3/3" in text
    assert "Replica summary:" in text
    assert "Peak replicas:\t3 ready, 3 pods" in text
    assert "Back to zero:\t2." in text
