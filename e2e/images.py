"""Images: dockerd (docker builds and pushes), the cluster's registry, BuildKit's daemon (the
buildx builder the docker-build provider uses), and images made from binaries built here (the
pause image, and Knative's commands, as `ko` makes them for Knative's developers)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
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


def registry_address(state: State) -> str:
    return f"127.0.0.1:{state.ports['registry']}"


def dockerd(ctx: Context) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    DOCKER_DATA.mkdir(parents=True, exist_ok=True)
    ctx.state.docker_host = f"unix://{RUN / 'docker.sock'}"
    ctx.start(
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
        lambda: ctx.docker("version", check=False).returncode == 0,
    )


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
    ctx.start(
        "registry",
        [require("docker-registry", "docker-registry"), "serve", str(config)],
        lambda: get_ok(f"http://127.0.0.1:{port}/v2/"),
    )


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
    ctx.start(
        "buildkitd",
        [str(tools.path("buildkitd")), f"--config={config}", f"--root={BUILDKIT_DATA}",
         f"--addr={address}"],
        lambda: _unix_socket_open(RUN / "buildkitd.sock"),
    )  # fmt: skip
    plugins = DOCKER_CONFIG / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "docker-buildx").symlink_to(tools.path("docker-buildx"))
    ctx.docker("buildx", "create", "--name", BUILDER, "--driver", "remote", "--use", address)
    ctx.docker("buildx", "inspect", "--bootstrap", BUILDER)


# The images made from binaries built here, by role: the pod sandbox's pause, and Knative's
# commands (config/core names them ko://knative.dev/serving/cmd/NAME; queue is every pod's
# sidecar), each at /ko-app/NAME as `ko` lays them out.
BINARY_IMAGES = {
    "pause": ("pause", "/pause"),
    **{name: (f"knative-{name}", f"/ko-app/{name}")
       for name in ("queue", "webhook", "controller", "autoscaler", "activator")},
}  # fmt: skip


def node_images(ctx: Context) -> None:
    """The images of the built binaries, pushed to the registry; the node pulls them by
    digest (state.images)."""
    registry = registry_address(ctx.state)
    for role, (tool, target) in BINARY_IMAGES.items():
        tag = binary_image(registry, role)
        import_binary(ctx, tools.path(tool), tag, target)
        pushed = ctx.docker("push", tag).stdout
        digest = next(w for w in pushed.split() if w.startswith("sha256:"))
        ctx.state.images[role] = f"{tag.rsplit(':', 1)[0]}@{digest}"
    ctx.state.save()


def binary_image(registry: str, role: str) -> str:
    """The tag of a built binary's image in REGISTRY (in dockerd too, which pushed it)."""
    repository = "mfsa/pause" if role == "pause" else f"knative-serving/{role}"
    return f"{registry}/{repository}:{knative.version()}"


def import_binary(ctx: Context, binary: Path, name: str, target: str) -> None:
    """An image of one static binary, its entrypoint, run as Knative's images run (65532)."""
    ctx.docker(
        "import", "--change", f'ENTRYPOINT ["{target}"]', "--change", "USER 65532", "-", name,
        stdin=binary_archive(binary, target),
    )  # fmt: skip


def binary_archive(binary: Path, target: str) -> bytes:
    """The root filesystem of one static binary at TARGET (and /tmp), as a tar archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        binary = binary.resolve()  # the file, where TOOLS_BIN holds a link to it
        info = tar.gettarinfo(str(binary), arcname=target.lstrip("/"))
        info.uid = info.gid = 0
        info.mode = 0o755
        with binary.open("rb") as data:
            tar.addfile(info, data)
    return buffer.getvalue()


def clean_node(ctx: Context) -> None:
    """The images tagged for this cluster's registry, which goes with it (runs while dockerd
    does)."""
    registry = f"127.0.0.1:{ctx.state.ports.get('registry')}/"
    images = ctx.docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False)
    if tagged := [i for i in images.stdout.split() if i.startswith(registry)]:
        ctx.docker("rmi", "--force", *tagged, check=False)
