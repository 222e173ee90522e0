"""Checks of the built image against a running container (see conftest.py)."""

from __future__ import annotations

import json
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx

from tests.image.conftest import REPORT, Container, docker, start_container

EXPECTED_LINES = (
    "Method A calculated the highest prime below 10000 as 9973\n"
    "Method B napped for 3 seconds\n"
    "Method C calculated pi as 3.161199 using 50 processes\n"
)
LAYER_BUDGET_BYTES = 40 * 1000 * 1000
# Nothing of these may be in the layers above the base.
FORBIDDEN = ("tests/", "infra/", "ops/", ".git/", "root/.cache/", "opt/uv/", "src/")
FORBIDDEN_NAMES = ("gcc", "cc", "g++", "make", "uv", "pip-cache")
# One package from each dependency group that is not the service's runtime.
NOT_RUNTIME = ("pytest", "sympy", "pulumi", "pulumi_kubernetes", "lightkube", "matplotlib")


def test_example_request_answers_the_original_text(container: Container) -> None:
    response = httpx.get(f"{container.url}/?in=10000&nap=3&processes=50", timeout=10)
    assert response.status_code == 200
    assert response.text.endswith("\n\n" + EXPECTED_LINES)
    assert response.headers["k-revision"] == "faas-00001"


def test_bad_input_is_a_400(container: Container) -> None:
    response = httpx.get(f"{container.url}/?in=ten&nap=0&processes=5")
    assert response.status_code == 400
    assert response.text.startswith("in: got 'ten', which is not an integer")


def test_health_readiness_and_metrics(container: Container) -> None:
    assert httpx.get(f"{container.url}/healthz").text == "ok\n"
    assert httpx.get(f"{container.url}/readyz").text == "ready\n"
    metrics = httpx.get(f"{container.url}/metrics").text
    assert 'myfirstserverlessapp_calls_total{method="heavyLifting"}' in metrics
    assert "process_resident_memory_bytes" in metrics


def test_large_sums_use_worker_processes_on_a_read_only_root(container: Container) -> None:
    response = httpx.get(f"{container.url}/?in=100&nap=0&processes=10000000&format=json")
    assert response.status_code == 200
    assert response.json()["pi_workers"] > 1
    assert abs(response.json()["pi"] - 3.1415927535897814) < 1e-12


def test_runs_as_a_fixed_non_root_uid(container: Container, image: str) -> None:
    assert (
        docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip() == "10001:10001"
    )
    ids = docker(
        "exec", container.name, "python", "-c", "import os; print(os.getuid(), os.getgid())"
    )
    assert ids.stdout.split() == ["10001", "10001"]


def test_root_filesystem_is_read_only_and_tmp_is_writable(container: Container) -> None:
    inspect = docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", container.name)
    assert inspect.stdout.strip() == "true"
    for path in ("/app/written", "/opt/venv/written"):
        attempt = docker(
            "exec", container.name, "python", "-c", f"open({path!r}, 'w')", check=False
        )
        assert attempt.returncode != 0
        assert "Read-only file system" in attempt.stderr
    docker("exec", container.name, "python", "-c", "open('/tmp/written', 'w')")
    assert httpx.get(f"{container.url}/healthz").status_code == 200


def test_docker_stop_drains_an_in_flight_request(image: str) -> None:
    running = start_container(image, f"faas-image-stop-{time.monotonic_ns()}")
    try:
        result: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: result.append(
                httpx.get(f"{running.url}/?in=10000&nap=2&processes=50", timeout=15)
            )
        )
        request.start()
        time.sleep(0.5)
        started = time.perf_counter()
        docker("stop", "--time", "10", running.name)
        stopped = time.perf_counter() - started
        request.join(15)
        assert result
        assert result[0].status_code == 200
        assert "Method B napped for 2 seconds" in result[0].text
        assert running.exit_code() == 0
        assert stopped < 5, f"docker stop took {stopped:.1f} s of the 10 s grace period"
        REPORT["docker stop with a nap=2 request in flight"] = f"{stopped:.2f} s, exit 0"
    finally:
        docker("rm", "--force", running.name, check=False)


def _layers_above_base(image: str, base_image: str) -> list[tuple[int, list[str]]]:
    """(size, file names) of each layer of ``image`` that ``base_image`` does not have."""
    base = set(
        json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", base_image).stdout)
    )
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "image.tar"
        docker("save", "--output", str(archive), image, timeout=300)
        with tarfile.open(archive) as saved:
            manifest = json.load(saved.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
            config = json.load(saved.extractfile(manifest["Config"]))  # type: ignore[arg-type]
            layers = []
            for diff_id, path in zip(config["rootfs"]["diff_ids"], manifest["Layers"], strict=True):
                if diff_id in base:
                    continue
                member = saved.getmember(path)
                with tarfile.open(fileobj=saved.extractfile(member)) as layer:
                    layers.append((member.size, layer.getnames()))
    return layers


def test_layers_above_the_base_are_small_and_hold_only_the_service(
    image: str, base_image: str
) -> None:
    layers = _layers_above_base(image, base_image)
    above = sum(size for size, _ in layers)
    total = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    REPORT["image size"] = f"{total / 1e6:.1f} MB"
    REPORT["layers above the base"] = f"{above / 1e6:.1f} MB in {len(layers)} layers"
    names = [name for _, files in layers for name in files]
    assert any(name.startswith("app/service/") for name in names)
    assert any(name.startswith("opt/venv/lib/") for name in names)
    for name in names:
        assert not name.startswith(FORBIDDEN), name
        assert Path(name).name not in FORBIDDEN_NAMES, name
    for package in NOT_RUNTIME:
        assert not any(f"site-packages/{package}" in name for name in names), package
    assert above <= LAYER_BUDGET_BYTES, f"{above / 1e6:.1f} MB above the base"
