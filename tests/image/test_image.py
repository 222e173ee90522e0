"""Checks of the built image against a running container (see conftest.py)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from image.rootfs import trimmed
from tests.dockerfile import trim_list
from tests.image.conftest import REPORT, Container, docker, start_container
from tests.utils import ZipkinReceiver, wait_in_flight

EXPECTED_LINES = (
    "Method A calculated the highest prime below 10000 as 9973\n"
    "Method B napped for 3 seconds\n"
    "Method C calculated pi as 3.161199 using 50 processes\n"
)
# The whole image, uncompressed (what `docker images` shows).
IMAGE_BUDGET_BYTES = 60 * 1000 * 1000
# Nothing of these may be in the layers above the base.
FORBIDDEN = ("tests/", "infra/", "ops/", ".git/", "root/.cache/", "opt/uv/", "src/")
FORBIDDEN_NAMES = ("gcc", "cc", "g++", "make", "uv", "pip-cache")
# One package from each dependency group that is not the service's runtime.
NOT_RUNTIME = ("pytest", "sympy", "pulumi", "pulumi_kubernetes", "lightkube", "matplotlib")
# Run in the container: imports every standard module the image has (but those that act on
# import: open a browser, print, or exist for tests), every extension module of the venv, the
# service and the exporter; prints what failed.
IMPORT_EVERYTHING = """
import importlib, importlib.util, json, pathlib, sys, sysconfig
ACT_ON_IMPORT = {"antigravity", "this", "__hello__", "__phello__", "idlelib", "turtledemo"}
failed = {}
def attempt(name):
    try:
        importlib.import_module(name)
        return True
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
        return False
present = sorted(n for n in sys.stdlib_module_names - ACT_ON_IMPORT if importlib.util.find_spec(n))
trimmed_found = sorted(n for n in ("sqlite3", "tkinter", "curses", "lib2to3", "ensurepip")
                       if importlib.util.find_spec(n))
stdlib = sum(attempt(name) for name in present)
site = pathlib.Path(sysconfig.get_paths()["purelib"])
extensions = 0
for path in sorted(site.rglob("*.so")):
    module = ".".join(path.relative_to(site).with_suffix("").with_suffix("").parts)
    extensions += attempt(module)
for name in ("service.__main__", "opentelemetry.exporter.zipkin.json", "uvicorn.lifespan.on",
             "uvicorn.protocols.http.httptools_impl", "uvicorn.loops.asyncio"):
    attempt(name)
print(json.dumps({"stdlib": stdlib, "extensions": extensions, "failed": failed,
                  "trimmed_found": trimmed_found}))
"""


@dataclass
class Layer:
    compressed: int  # gzip, as a registry stores it
    members: dict[str, tarfile.TarInfo]


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
        wait_in_flight(running.url, 1)  # the request is in the app before the SIGTERM
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


def _layers(image: str) -> list[Layer]:
    """The image's layers as `docker save` writes them, with what a registry would store."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "image.tar"
        docker("save", "--output", str(archive), image, timeout=300)
        with tarfile.open(archive) as saved:
            manifest = json.load(saved.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
            layers = []
            for path in manifest["Layers"]:
                blob = saved.extractfile(path).read()  # type: ignore[union-attr]
                with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                    members = {m.name: m for m in layer.getmembers()}
                layers.append(Layer(len(gzip.compress(blob, 6)), members))
    return layers


@pytest.fixture(scope="module")
def layers(image: str) -> list[Layer]:
    return _layers(image)


def test_the_image_is_small_and_holds_only_what_the_service_runs_on(
    image: str, base_image: str, layers: list[Layer]
) -> None:
    total = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    base = int(docker("image", "inspect", "-f", "{{.Size}}", base_image).stdout)
    REPORT["image size"] = (
        f"{total / 1e6:.1f} MB, {sum(layer.compressed for layer in layers) / 1e6:.1f} MB "
        f"compressed (what a node pulls), in {len(layers)} layers; base {base / 1e6:.1f} MB"
    )
    names = [name for layer in layers for name in layer.members]
    assert any(name.startswith("app/service/") for name in names)
    assert any(name.startswith("opt/venv/lib/") for name in names)
    for name in names:
        assert not name.startswith(FORBIDDEN), name
        assert Path(name).name not in FORBIDDEN_NAMES, name
    for package in NOT_RUNTIME:
        assert not any(f"site-packages/{package}" in name for name in names), package
    assert total <= IMAGE_BUDGET_BYTES, f"{total / 1e6:.1f} MB"


def test_no_shell_and_no_package_manager(layers: list[Layer]) -> None:
    names = {Path(name).name for layer in layers for name in layer.members}
    assert not names & {"sh", "bash", "dash", "apt", "apt-get", "dpkg", "pip", "pip3", "ldd"}


def test_what_the_dockerfile_trims_is_not_in_the_image(
    layers: list[Layer], container: Container
) -> None:
    stdlib = _run_python("import sysconfig; print(sysconfig.get_paths()['stdlib'])", container)
    prefix = stdlib.strip().lstrip("/") + "/"
    kept = [n[len(prefix) :] for layer in layers for n in layer.members if n.startswith(prefix)]
    assert "os.py" in kept
    for glob in trim_list():
        found = [name for name in kept if trimmed(name, [glob])]
        assert not found, f"{glob} is trimmed by the Dockerfile, yet in the image: {found[:3]}"


def test_every_module_left_imports(container: Container) -> None:
    """A module the app or a library imports at run time fails here, not in a request: every
    standard module left, every extension module (and so every shared library it links), the
    service's own modules and the Zipkin exporter (imported once an endpoint is set)."""
    output = _run_python(IMPORT_EVERYTHING, container)
    counts = json.loads(output.splitlines()[-1])
    REPORT["modules imported in the image"] = (
        f"{counts['stdlib']} standard, {counts['extensions']} extension modules in the venv"
    )
    assert counts["failed"] == {}
    assert counts["stdlib"] > 150
    assert counts["trimmed_found"] == []


def test_spans_reach_a_collector_from_the_image(image: str) -> None:
    with ZipkinReceiver().running() as collector:
        running = start_container(
            image, f"faas-image-spans-{time.monotonic_ns()}",
            "--env", f"OTEL_EXPORTER_ZIPKIN_ENDPOINT={collector.endpoint}",
        )  # fmt: skip
        try:
            spans = collector.wait_for(4, timeout=20)
        finally:
            docker("rm", "--force", running.name, check=False)
    names = {span["name"] for span in spans}
    assert {"GET /", "heavyweightMethodA", "heavyweightMethodB", "heavyweightMethodC"} <= names


def _run_python(code: str, container: Container) -> str:
    return docker("exec", container.name, "python", "-c", code, timeout=300).stdout
