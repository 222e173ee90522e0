"""`python -m e2e.tools`: the pinned tools of the local control plane, into build/bin.

Each Go tool comes from a Go module under tools/ (go.mod and go.sum pin every version), built
with the Go module proxy as the only source. A tool is rebuilt only when its pin changes: its
stamp (build/bin/.stamps/NAME) records what it was built from. Each Java tool (Zipkin) is a
Maven artifact pinned by its coordinates and sha256 (tools/NAME/artifact), fetched from Maven
Central with Maven and refused unless its sha256 matches. Every tool's version is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
# Where the tools are: build/bin, or TOOLS_BIN (a directory of tools built elsewhere).
BIN = Path(os.environ.get("TOOLS_BIN") or ROOT / "build" / "bin")
STAMPS = BIN / ".stamps"


class ToolError(RuntimeError):
    """A tool could not be built or located."""


@dataclass(frozen=True)
class Tool:
    name: str  # the file in build/bin
    module: str  # its Go module, a directory under tools/
    package: str  # the main package built
    source: str  # the upstream module whose version the tool is
    version_args: tuple[str, ...] = ()  # arguments that make it print its version, if any
    cluster: bool = True  # the control plane needs it (else a Pulumi tool, or a benchmark's)


K8S_PROVIDER = "github.com/pulumi/pulumi-kubernetes/provider/v4"
DOCKER_BUILD_PROVIDER = "github.com/pulumi/pulumi-docker-build"
BUILDKIT = "github.com/moby/buildkit"
BUILDX = "github.com/docker/buildx"
PULUMI_SDK = "github.com/pulumi/pulumi/sdk/v3"
VICTORIAMETRICS = "github.com/VictoriaMetrics/VictoriaMetrics"
KUBE_STATE_METRICS = "k8s.io/kube-state-metrics/v2"
COREDNS = "github.com/coredns/coredns"
OTELCOL = "go.opentelemetry.io/collector/otelcol"

TOOLS_LIST = (
    Tool("etcd", "kubernetes", "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3",
         ("--version",)),
    Tool("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver",
         "k8s.io/kubernetes", ("--version",)),
    Tool("kube-controller-manager", "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager",
         "k8s.io/kubernetes", ("--version",)),
    Tool("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler",
         "k8s.io/kubernetes", ("--version",)),
    Tool("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl", "k8s.io/kubernetes",
         ("version", "--client")),
    Tool("kube-proxy", "kubernetes", "k8s.io/kubernetes/cmd/kube-proxy", "k8s.io/kubernetes",
         ("--version",)),
    Tool("kubelet", "kubernetes", "k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes",
         ("--version",)),
    Tool("coredns", "coredns", COREDNS, COREDNS, ("-version",)),
    Tool("knative-webhook", "knative", "knative.dev/serving/cmd/webhook", "knative.dev/serving"),
    Tool("knative-controller", "knative", "knative.dev/serving/cmd/controller",
         "knative.dev/serving"),
    Tool("knative-autoscaler", "knative", "knative.dev/serving/cmd/autoscaler",
         "knative.dev/serving"),
    Tool("knative-activator", "knative", "knative.dev/serving/cmd/activator",
         "knative.dev/serving"),
    Tool("knative-queue", "knative", "knative.dev/serving/cmd/queue", "knative.dev/serving"),
    # Knative's scale-from-zero benchmark app: benchmarks/fromzero.py's baseline.
    Tool("knative-helloworld", "knative", "knative.dev/serving/test/test_images/helloworld",
         "knative.dev/serving", cluster=False),
    Tool("pause", "pause", "myfirstserverlessapp/tools/pause", "myfirstserverlessapp/tools/pause"),
    Tool("victoria-metrics", "victoriametrics", f"{VICTORIAMETRICS}/app/victoria-metrics",
         VICTORIAMETRICS, ("--version",)),
    Tool("kube-state-metrics", "kube-state-metrics", KUBE_STATE_METRICS, KUBE_STATE_METRICS,
         ("version",)),
    Tool("otelcol", "otelcol", "myfirstserverlessapp/tools/otelcol", OTELCOL, ("--version",)),
    Tool("buildkitd", "docker-build", f"{BUILDKIT}/cmd/buildkitd", BUILDKIT, ("--version",)),
    Tool("docker-buildx", "docker-build", f"{BUILDX}/cmd/buildx", BUILDX, ("version",)),
    Tool("pulumi", "pulumi", "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
         "github.com/pulumi/pulumi/pkg/v3", ("version",), cluster=False),
    Tool("pulumi-resource-kubernetes", "pulumi-kubernetes",
         f"{K8S_PROVIDER}/cmd/pulumi-resource-kubernetes", K8S_PROVIDER, cluster=False),
    Tool("pulumi-resource-docker-build", "docker-build",
         f"{DOCKER_BUILD_PROVIDER}/provider/cmd/pulumi-resource-docker-build",
         DOCKER_BUILD_PROVIDER, cluster=False),
)  # fmt: skip
# The Pulumi providers installed as plugins into build/pulumi-home (pulumi-resource-NAME).
PROVIDERS = ("kubernetes", "docker-build")
# Every tool the control plane runs: the Go tools it needs, and the Java ones (ARTIFACTS).
CLUSTER_TOOLS = (*(t.name for t in TOOLS_LIST if t.cluster), "zipkin-server.jar")


def go_env() -> dict[str, str]:
    """Static binaries (no C toolchain needed; Go's own resolver reads /etc/hosts)."""
    env = dict(os.environ, CGO_ENABLED="0")
    env.setdefault("GOFLAGS", "")
    env["GOFLAGS"] = f"{env['GOFLAGS']} -buildvcs=false".strip()
    return env


def _go(args: list[str], module: str) -> str:
    if shutil.which("go") is None:
        raise ToolError("go: not found; the Go toolchain builds the control plane's tools")
    result = subprocess.run(
        ["go", *args], cwd=TOOLS / module, env=go_env(), capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ToolError(f"go {' '.join(args)} (tools/{module}): {result.stderr.strip()}")
    return result.stdout


@cache
def module_info(module: str, path: str) -> dict[str, str]:
    """`go list -m -json` of ``path`` as pinned by tools/MODULE: Version, Dir, Time..."""
    info: dict[str, str] = json.loads(_go(["list", "-m", "-json", path], module))
    return info


def module_dir(module: str, path: str) -> Path:
    """Where the module cache holds ``path`` at the version tools/MODULE pins (downloaded)."""
    _go(["mod", "download", path], module)
    directory = module_info(module, path).get("Dir")
    if not directory:
        raise ToolError(f"{path}: not in the module cache")
    return Path(directory)


def knative_release(module_version: str) -> str:
    """Knative's release number of a knative.dev/serving module version: v0.N.P is 1.(N-27).P."""
    match = re.fullmatch(r"v0\.(\d+)\.(\d+)", module_version)
    if not match:
        return module_version
    return f"1.{int(match.group(1)) - 27}.{match.group(2)}"


def _ldflags(tool: Tool) -> str:
    flags = ["-s", "-w"]
    if tool.source == "k8s.io/kubernetes":
        # What Kubernetes' own build stamps (hack/lib/version.sh): Knative and kubectl check it.
        info = module_info(tool.module, tool.source)
        version = info["Version"]
        major, minor = re.findall(r"\d+", version)[:2]
        values = {
            "gitVersion": version,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
            "buildDate": info.get("Time", "1970-01-01T00:00:00Z"),
        }
        for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
            flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    elif (flag := VERSION_FLAGS.get(tool.source)) is not None:
        variable, value = flag
        flags.append(f"-X {variable}={value(tool)}")
    return " ".join(flags)


def pinned(tool: Tool) -> str:
    return module_info(tool.module, tool.source)["Version"]


def plugin_version(name: str) -> str:
    """The version of provider NAME that its Python SDK (uv.lock) asks the engine for."""
    package = "pulumi_" + name.replace("-", "_")
    try:
        metadata = json.loads(resources.files(package).joinpath("pulumi-plugin.json").read_text())
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise ToolError(f"{package}: not installed; run make env") from error
    return str(metadata["version"])


# What each other tool's own build stamps into it (-X VARIABLE=VALUE): the variable, and its
# value for the tool.
VERSION_FLAGS: dict[str, tuple[str, Callable[[Tool], str]]] = {
    "github.com/pulumi/pulumi/pkg/v3": (f"{PULUMI_SDK}/go/common/version.Version", pinned),
    # As its Makefile does; the version is the one the Python SDK asks the engine for.
    K8S_PROVIDER: (f"{K8S_PROVIDER}/pkg/version.Version", lambda _: plugin_version("kubernetes")),
    DOCKER_BUILD_PROVIDER: (
        f"{DOCKER_BUILD_PROVIDER}/provider.Version",
        lambda _: plugin_version("docker-build"),
    ),
    # What its Makefile stamps (`--version` prints it).
    VICTORIAMETRICS: (
        f"{VICTORIAMETRICS}/lib/buildinfo.Version",
        lambda t: f"victoria-metrics-{pinned(t)}",
    ),
    COREDNS: (f"{COREDNS}/coremain.GitCommit", pinned),
    # Our collector's main (tools/otelcol) prints the release of the collector it composes.
    OTELCOL: ("main.version", pinned),
    KUBE_STATE_METRICS: ("github.com/prometheus/common/version.Version", pinned),
    # What their Makefiles stamp: the docker-build provider reads BuildKit's version.
    BUILDKIT: (f"{BUILDKIT}/version.Version", pinned),
    BUILDX: (f"{BUILDX}/version.Version", pinned),
}


def _provider_source(tool: Tool) -> list[str]:
    """The Kubernetes provider's source with its schema embedded, as its Makefile does: the
    module (as go.sum pins it) copied to build/src, then its own generate.go writes
    schema-embed.json and terraform-mapping-embed.json beside main.go. Returns the go flags that
    build from that copy (a go.mod of our own with one replace line, so tools/ stays as pinned)."""
    work = ROOT / "build" / "src" / tool.module
    copy = work / "provider"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(module_dir(tool.module, tool.source), copy, copy_function=shutil.copyfile)
    for directory, _, _ in os.walk(copy):
        os.chmod(directory, 0o700)  # the module cache's are read-only; generate.go writes here
    command = copy / "cmd" / "pulumi-resource-kubernetes"
    _go(["build", "-o", str(work / "generate"), str(command / "generate.go")], tool.module)
    generated = subprocess.run(
        [str(work / "generate")], cwd=command, capture_output=True, text=True, check=False,
        env=dict(os.environ, VERSION=plugin_version("kubernetes")),
    )  # fmt: skip
    if generated.returncode != 0:
        raise ToolError(f"{tool.name}: generate.go: {generated.stderr.strip()}")
    modfile = work / "go.mod"
    pins = (TOOLS / tool.module / "go.mod").read_text()
    modfile.write_text(f"{pins}\nreplace {tool.source} => {copy}\n")
    shutil.copyfile(TOOLS / tool.module / "go.sum", work / "go.sum")
    return [f"-modfile={modfile}"]


def _stamp(tool: Tool) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "tools.go", "main.go"):
        path = TOOLS / tool.module / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    go_version = subprocess.run(
        ["go", "env", "GOVERSION"], env=go_env(), capture_output=True, text=True, check=False
    ).stdout.strip()
    digest.update(f"{tool.package}\0{_ldflags(tool)}\0{go_version}".encode())
    return digest.hexdigest()


def version(tool: Tool) -> str:
    """The built tool's version, as it prints it, else as its module pin says."""
    path = BIN / tool.name
    if tool.version_args:
        result = subprocess.run(
            [str(path), *tool.version_args], capture_output=True, text=True, check=False
        )
        lines = (result.stdout or result.stderr).strip().splitlines()
        return lines[0] if lines else "?"
    if tool.source == tool.package:
        return "local"
    pin = pinned(tool)
    if tool.source == "knative.dev/serving":
        return f"{tool.source} {pin} (Knative Serving {knative_release(pin)})"
    if tool.source == K8S_PROVIDER:
        return f"kubernetes {plugin_version('kubernetes')} from provider/v4 {pin}"
    if tool.source == DOCKER_BUILD_PROVIDER:
        return f"docker-build {plugin_version('docker-build')} from {tool.source} {pin}"
    return f"{tool.source} {pin}"


def build(tool: Tool, *, force: bool = False) -> tuple[bool, float]:
    """Build ``tool`` unless its stamp matches; returns (built, seconds)."""
    stamp = _stamp(tool)
    stamp_file = STAMPS / tool.name
    target = BIN / tool.name
    fresh = target.exists() and stamp_file.exists() and stamp_file.read_text() == stamp
    if fresh and not force:
        return False, 0.0
    STAMPS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    partial = target.with_name(f".{tool.name}.partial")
    flags = _provider_source(tool) if tool.source == K8S_PROVIDER else []
    _go(["build", *flags, "-ldflags", _ldflags(tool), "-o", str(partial), tool.package],
        tool.module)  # fmt: skip
    partial.replace(target)
    stamp_file.write_text(stamp)
    return True, time.monotonic() - started


def ensure(names: list[str] | None = None, *, force: bool = False, out: bool = True) -> None:
    """Build or fetch the named tools (all by default) as needed and print each one's
    version."""
    for artifact in ARTIFACTS:
        if names is None or artifact.name in names:
            fetched, seconds = fetch(artifact)
            if out:
                how = f"fetched in {seconds:.0f} s" if fetched else "up to date"
                pin = f"{artifact.pinned()[0]} (sha256 checked)"
                print(f"{artifact.name:<30} {pin:<62} {how}", flush=True)
    wanted = [t for t in TOOLS_LIST if names is None or t.name in names]
    for tool in wanted:
        built, seconds = build(tool, force=force)
        if out:
            how = f"built in {seconds:.0f} s" if built else "up to date"
            print(f"{tool.name:<30} {version(tool):<62} {how}", flush=True)
    if any(not tool.cluster for tool in wanted) and (BIN / "pulumi").exists():
        for line in pulumi_home():
            if out:
                print(line, flush=True)


PULUMI_HOME = ROOT / "build" / "pulumi-home"
# Beside the CLI a release ships these plain files of the SDK module (sdk/v3 at the CLI's pin).
SDK_SCRIPTS = (
    "python/cmd/pulumi-language-python-exec",
    "python/dist/pulumi-resource-pulumi-python",
)


def pulumi_home() -> list[str]:
    """The SDK's scripts in build/bin, and each provider installed as a plugin into
    build/pulumi-home at the version its Python SDK asks for."""
    sdk = module_dir("pulumi", PULUMI_SDK)
    scripts = {Path(name).name: (sdk / name).read_text() for name in SDK_SCRIPTS}
    for name, text in scripts.items():
        target = BIN / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            target.chmod(0o755)
    lines = []
    for name in PROVIDERS:
        plugin, binary = plugin_version(name), f"pulumi-resource-{name}"
        installed = PULUMI_HOME / "plugins" / f"resource-{name}-v{plugin}"
        stamp, done = (STAMPS / binary).read_text(), installed / ".mfsa-stamp"
        if done.exists() and done.read_text() == stamp:
            continue
        result = subprocess.run(
            [str(BIN / "pulumi"), "plugin", "install", "resource", name, f"v{plugin}",
             "--file", str(BIN / binary), "--reinstall"],
            env=dict(os.environ, PULUMI_HOME=str(PULUMI_HOME), PULUMI_SKIP_UPDATE_CHECK="true"),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ToolError(f"pulumi plugin install {name}: {result.stderr.strip()}")
        done.write_text(stamp)
        lines.append(f"plugin resource {name} v{plugin} installed into build/pulumi-home")
    return lines


MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


@dataclass(frozen=True)
class Artifact:
    """A Java tool: build/bin/NAME, the Maven artifact pinned in tools/PIN/artifact."""

    name: str
    pin: str

    def pinned(self) -> tuple[str, str]:
        """The artifact's coordinates and sha256, as tools/PIN/artifact gives them."""
        fields = {}
        for line in (TOOLS / self.pin / "artifact").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition(" ")
                fields[key] = value.strip()
        return fields["coordinates"], fields["sha256"]


ARTIFACTS = (Artifact("zipkin-server.jar", "zipkin"),)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(artifact: Artifact) -> tuple[bool, float]:
    """Fetch ARTIFACT with Maven unless build/bin has it with the pinned sha256; returns
    (fetched, seconds). ToolError if Maven is missing or the sha256 is not the pinned one."""
    coordinates, sha256 = artifact.pinned()
    target = BIN / artifact.name
    if target.exists() and _sha256(target) == sha256:
        return False, 0.0
    if shutil.which("mvn") is None:
        raise ToolError(f"mvn: not found; Maven fetches {coordinates} (apt-get install maven)")
    started = time.monotonic()
    download = ROOT / "build" / "maven"
    shutil.rmtree(download, ignore_errors=True)
    result = subprocess.run(
        ["mvn", "--batch-mode", "--quiet", f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
         f"-Dartifact={coordinates}", f"-DoutputDirectory={download}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    files = sorted(download.glob("*.jar"))
    if result.returncode != 0 or len(files) != 1:
        last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no jar"]
        raise ToolError(f"mvn: cannot fetch {coordinates}: {last[0]}")
    if (got := _sha256(files[0])) != sha256:
        raise ToolError(f"{coordinates}: sha256 {got}, not the pinned {sha256}")
    BIN.mkdir(parents=True, exist_ok=True)
    files[0].replace(target)
    shutil.rmtree(download, ignore_errors=True)
    return True, time.monotonic() - started


def path(name: str) -> Path:
    """build/bin/NAME, which must have been built (make tools)."""
    target = BIN / name
    if not target.exists():
        raise ToolError(f"{name}: not built; run make tools")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the pinned Go tools into build/bin.")
    parser.add_argument("names", nargs="*", help="tools to build (all by default)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - {t.name for t in TOOLS_LIST} - {a.name for a in ARTIFACTS})
    if unknown:
        print(f"tools: unknown tool {unknown[0]}", file=sys.stderr)
        return 2
    try:
        ensure(args.names or None, force=args.force)
    except ToolError as error:
        print(f"tools: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
