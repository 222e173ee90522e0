"""Stand-in for pulumi-language-python, Pulumi's Python language host.

`python -m e2e.language_host ARGS...` runs the pinned pulumi CLI (build/bin/pulumi) with ARGS,
for example `preview --policy-pack policy` or `up --yes`, with this project's local settings:
its own PULUMI_HOME (build/pulumi-home, where `make tools` installs the providers), a file
backend in build/pulumi-state, and an empty passphrase unless PULUMI_CONFIG_PASSPHRASE is set.

Why a stand-in: the language host is the Go module
github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3, and the Go module proxy
serves it at no version, so it cannot be built here. Its job is to run the program (and policy
packs) for the engine. This module does that job with Pulumi's own code, the way the Automation
API runs an inline program: the Python SDK's LanguageServer answers the engine's LanguageRuntime
calls from this process, and the real CLI connects to it with its --client flag. Everything else
is the real thing: the engine, the providers, the state, the policy pack.

Policy packs: the engine runs a policy pack directory through its runtime's language host too,
and it runs an executable given as --policy-pack directly, with the engine's address. So each
`--policy-pack DIR` becomes an executable of two lines in build/pulumi-policy that runs the SDK's
own policy runner, `python -m pulumi.policy ADDRESS DIR`, which is what the language host runs.
"""

from __future__ import annotations

import os
import runpy
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from pulumi.automation._server import LanguageServer
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

from e2e import tools

ROOT = tools.ROOT
HOME = tools.PULUMI_HOME
STATE = ROOT / "build" / "pulumi-state"
POLICY_LAUNCHERS = ROOT / "build" / "pulumi-policy"
# The commands that run the program; the others (config, stack, plugin...) only read state.
RUNS_PROGRAM = frozenset({"up", "update", "preview", "refresh", "destroy"})


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment: local home, file backend, this venv's python first on PATH."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PULUMI_HOME", str(HOME))
    env.setdefault("PULUMI_BACKEND_URL", STATE.as_uri())
    env.setdefault("PULUMI_CONFIG_PASSPHRASE", "")
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    env.setdefault("PULUMI_PYTHON_CMD", sys.executable)
    # Providers come from PULUMI_HOME, where `make tools` installs them, not from PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def program() -> None:
    """The project's program, infra/__main__.py, as `main: infra/` in Pulumi.yaml names it."""
    runpy.run_module("infra", run_name="__main__", alter_sys=False)


class ProgramServer(LanguageServer):
    """The SDK's server, reporting a failed program as the language host does: the SDK has
    already logged the error to the engine, so the run "bails" and the engine does not print it
    a second time as an unhandled error."""

    def Run(self, request: Any, context: Any) -> Any:  # noqa: N802 (the gRPC method's name)
        result = super().Run(request, context)  # type: ignore[no-untyped-call]
        if result.error:
            return language_pb2.RunResponse(bail=True)
        return result


@contextmanager
def serving() -> Iterator[str]:
    """The SDK's LanguageServer for ``program`` on 127.0.0.1; yields its address."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(ProgramServer(program), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def policy_launcher(pack: Path) -> Path:
    """An executable that runs the policy pack in directory PACK with the engine's address."""
    pack = pack.resolve()
    if not (pack / "PulumiPolicy.yaml").exists():
        raise tools.ToolError(f"{pack}: no PulumiPolicy.yaml, not a policy pack")
    POLICY_LAUNCHERS.mkdir(parents=True, exist_ok=True)
    launcher = POLICY_LAUNCHERS / pack.name
    python = shlex.quote(sys.executable)
    launcher.write_text(
        f'#!/bin/sh\ncd {shlex.quote(str(pack))} && exec {python} -u -m pulumi.policy "$1" .\n'
    )
    launcher.chmod(0o700)
    return launcher


def with_launchers(args: Sequence[str]) -> list[str]:
    """ARGS with each `--policy-pack DIR` (or `--policy-pack=DIR`) pointing at its launcher."""
    out: list[str] = []
    for arg in args:
        if out and out[-1] == "--policy-pack" and Path(arg).is_dir():
            out.append(str(policy_launcher(Path(arg))))
        elif arg.startswith("--policy-pack=") and Path(arg.partition("=")[2]).is_dir():
            out.append(f"--policy-pack={policy_launcher(Path(arg.partition('=')[2]))}")
        else:
            out.append(arg)
    return out


# The CLI's flags that may come before the subcommand and take a separate value.
VALUE_FLAGS = frozenset({"-s", "--stack", "-C", "--cwd", "--color", "--config-file", "-v",
                         "--verbose", "--tracing", "--profiling", "--otel-traces",
                         "--memprofilerate"})  # fmt: skip


def command(args: Sequence[str]) -> str | None:
    """The pulumi subcommand in ARGS: the first word that is neither a flag nor a flag's value."""
    after_flag = False
    for arg in args:
        if arg == "--":
            return None
        if arg.startswith("-"):
            after_flag = arg in VALUE_FLAGS
        elif after_flag:
            after_flag = False
        else:
            return arg
    return None


def run(args: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run the CLI with ARGS; the program is served from this process when ARGS runs it."""
    cli = str(tools.path("pulumi"))
    env = environment(env)
    STATE.mkdir(parents=True, exist_ok=True)
    if command(args) not in RUNS_PROGRAM:
        return subprocess.run([cli, *args], env=env, cwd=ROOT, check=False).returncode
    with serving() as address:
        # --client is the CLI's flag for a language runtime that is already running.
        argv = [cli, *with_launchers(args), f"--client={address}", "--exec-kind=auto.inline"]
        return subprocess.run(argv, env=env, cwd=ROOT, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return run(args)
    except tools.ToolError as error:
        print(f"pulumi: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
