"""Images: the node's dockerd, the cluster's registry, BuildKit's daemon (the buildx builder the
docker-build provider uses), and images made from binaries built here (the pause image, and
Knative's queue-proxy image, as `ko` makes them for Knative's developers)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
from pathlib import Path

import yaml

from e2e import knative, tools
from e2e.context import (
    DOCKER_CONFIG,
    ROOT,
    RUN,
    STATE,
    Context,
    State,
    get_ok,
    require,
)

DOCKER_DATA = ROOT / "build" / "docker"  # the node's image store: kept across clusters
BUILDKIT_DATA = ROOT / "build" / "buildkit"  # BuildKit's cache: kept across clusters
BUILDER = "local"  # the buildx builder: BuildKit's daemon, the current builder in DOCKER_CONFIG
PAUSE_IMAGE = "mfsa/pause:local"
POD_LABEL = "mfsa.pod.uid"  # the kubelet stand-in's label on every container it runs


def registry_address(state: State) -> str:
    return f"127.0.0.1:{state.ports['registry']}"


def dockerd(ctx: Context) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    DOCKER_DATA.mkdir(parents=True, exist_ok=True)
    ctx.state.docker_host = f"unix://{RUN / 'docker.sock'}"
    started = time.monotonic()
    process = ctx.spawn(
        "dockerd",
        [
            require("dockerd", "docker.io"),
            f"--host={ctx.state.docker_host}",
            f"--data-root={DOCKER_DATA}",
            f"--exec-root={RUN / 'exec'}",
            f"--pidfile={RUN / 'dockerd.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
        ],
    )
    ctx.wait(process, lambda: ctx.docker("version", check=False).returncode == 0, started)


def registry(ctx: Context) -> None:
    port = ctx.state.ports["registry"]
    config = STATE / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {
                    "filesystem": {"rootdirectory": str(STATE / "registry")},
                    "delete": {"enabled": True},
                },
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    started = time.monotonic()
    process = ctx.spawn(
        "registry", [require("docker-registry", "docker-registry"), "serve", str(config)]
    )
    ctx.wait(process, lambda: get_ok(f"http://127.0.0.1:{port}/v2/"), started)


def _unix_socket_open(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
    return True


def buildkit(ctx: Context) -> None:
    """BuildKit's daemon on the node's network, with the cluster's registry as plain HTTP,
    and a buildx builder of the remote driver pointing at it, made the current builder in
    DOCKER_CONFIG: the docker-build provider builds there (it refuses Docker's own builder,
    and would otherwise start one from an image on Docker Hub)."""
    config = STATE / "buildkitd.toml"
    config.write_text(
        '[worker.oci]\n  enabled = true\n  networkMode = "host"\n'
        "[worker.containerd]\n  enabled = false\n"
        "[cdi]\n  disabled = true\n"
        f"[registry.{json.dumps(registry_address(ctx.state))}]\n  http = true\n"
    )
    BUILDKIT_DATA.mkdir(parents=True, exist_ok=True)
    address = f"unix://{RUN / 'buildkitd.sock'}"
    started = time.monotonic()
    process = ctx.spawn(
        "buildkitd",
        [str(tools.path("buildkitd")), f"--config={config}", f"--root={BUILDKIT_DATA}",
         f"--addr={address}"],
    )  # fmt: skip
    ctx.wait(process, lambda: _unix_socket_open(RUN / "buildkitd.sock"), started)
    plugins = DOCKER_CONFIG / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "docker-buildx").symlink_to(tools.path("docker-buildx"))
    ctx.docker("buildx", "create", "--name", BUILDER, "--driver", "remote", "--use", address)
    ctx.docker("buildx", "inspect", "--bootstrap", BUILDER)


def node_images(ctx: Context) -> None:
    """The pause image, and the queue-proxy image pushed to the registry (Knative names it in
    every pod, by digest)."""
    import_binary(ctx, tools.path("pause"), PAUSE_IMAGE, "/pause")
    queue = f"{registry_address(ctx.state)}/knative-serving/queue:{knative.version()}"
    import_binary(ctx, tools.path("knative-queue"), queue, "/ko-app/queue")
    pushed = ctx.docker("push", queue).stdout
    digest = next(w for w in pushed.split() if w.startswith("sha256:"))
    ctx.state.images["queue"] = f"{registry_address(ctx.state)}/knative-serving/queue@{digest}"
    ctx.state.save()


def import_binary(ctx: Context, binary: Path, name: str, target: str) -> None:
    """An image of one static binary, its entrypoint, run as Knative's images run (65532)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        info = tar.gettarinfo(str(binary), arcname=target.lstrip("/"))
        info.uid = info.gid = 0
        info.mode = 0o755
        with binary.open("rb") as data:
            tar.addfile(info, data)
    ctx.docker(
        "import", "--change", f'ENTRYPOINT ["{target}"]', "--change", "USER 65532", "-", name,
        stdin=buffer.getvalue(),
    )  # fmt: skip


def clean_node(ctx: Context) -> None:
    """Every container the kubelet stand-in started (it leaves them, as a kubelet does), and
    the images tagged for this cluster's registry, which goes with it. Runs while dockerd does."""
    listed = ctx.docker("ps", "-aq", "--filter", f"label={POD_LABEL}", check=False)
    if ids := listed.stdout.split():
        ctx.docker("rm", "--force", *ids, check=False)
    registry = f"127.0.0.1:{ctx.state.ports.get('registry')}/"
    images = ctx.docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False)
    if tagged := [i for i in images.stdout.split() if i.startswith(registry)]:
        ctx.docker("rmi", "--force", *tagged, check=False)
