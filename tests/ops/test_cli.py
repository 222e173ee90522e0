"""`faas` argument handling (pass-through with stubbed runners) and `faas call` end to end."""

from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.context import free_port
from ops import cli, commands
from ops.endpoint import Endpoint, OpsError, resolve
from ops.requester import Work
from tests.utils import ZipkinReceiver, faas, run_service, wait_in_flight


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    calls: dict[str, Any] = {}
    monkeypatch.delenv("METRICS", raising=False)
    monkeypatch.delenv("TRACES", raising=False)
    for name in ("run_call", "run_load", "run_watch"):
        monkeypatch.setattr(
            commands, name, lambda _name=name, **kwargs: calls.update({_name: kwargs}) or 0
        )
    return calls


def test_load_passes_heys_flags_through(captured: dict[str, Any]) -> None:
    argv = [
        "load", "-z", "2m", "-c", "11", "-q", "5", "-t", "3", "-m", "POST",
        "-H", "Accept: application/json", "-H", "X-Test: 1", "-host", "app.example.com",
        "--watch", "myfirstserverlessapp", "--namespace", "ns", "--watch-after", "90",
        "--plot", "out.png", "--json", "http://127.0.0.1:8080/?in=10000&nap=9&processes=500",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    kwargs = captured["run_load"]
    assert kwargs["work"] == Work(
        url="http://127.0.0.1:8080/?in=10000&nap=9&processes=500", method="POST",
        headers=(("Accept", "application/json"), ("X-Test", "1")), host="app.example.com",
        n=200, concurrency=11, qps=5.0, duration=120.0, timeout=3.0,
    )  # fmt: skip
    assert kwargs["as_json"] is True
    assert (kwargs["watch"], kwargs["namespace"], kwargs["watch_after"]) == (
        "myfirstserverlessapp",
        "ns",
        90.0,
    )
    assert kwargs["plot_path"] == Path("out.png")


def test_load_defaults_are_heys(captured: dict[str, Any]) -> None:
    assert cli.main(["load", "--host", "h", "http://127.0.0.1/"]) == 0
    work = captured["run_load"]["work"]
    assert (work.n, work.concurrency, work.qps, work.duration, work.timeout) == (
        200, 50, 0.0, 0.0, 20.0,
    )  # fmt: skip
    assert work.host == "h"


def test_load_t_0_means_no_timeout_for_a_run_with_a_duration(captured: dict[str, Any]) -> None:
    assert cli.main(["load", "-t", "0", "-z", "5s", "http://127.0.0.1/"]) == 0
    assert captured["run_load"]["work"].timeout == 0


def test_call_and_watch_pass_through(captured: dict[str, Any]) -> None:
    assert cli.main(["call", "--host", "gw", "--domain", "d", "--in", "100", "--nap", "0",
                     "--processes", "5", "--json", "--curl"]) == 0  # fmt: skip
    assert captured["run_call"] == {
        "stack": "bosun", "host": "gw", "domain": "d", "in_": 100, "nap": 0, "processes": 5,
        "as_json": True, "curl": True, "timeout": 30.0, "traces": None,
    }  # fmt: skip
    assert cli.main(["watch", "myfirstserverlessapp", "--namespace", "ns"]) == 0
    assert captured["run_watch"] == {
        "service": "myfirstserverlessapp", "namespace": "ns", "metrics": None,
    }  # fmt: skip


def test_metrics_store_comes_from_the_flag_else_metrics_env(
    captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["watch", "svc", "--metrics", "http://127.0.0.1:8428"]) == 0
    assert captured["run_watch"]["metrics"] == "http://127.0.0.1:8428"
    monkeypatch.setenv("METRICS", "http://127.0.0.1:9999")
    assert cli.main(["load", "--watch", "svc", "http://127.0.0.1/"]) == 0
    assert captured["run_load"]["metrics"] == "http://127.0.0.1:9999"
    assert cli.main(["watch", "svc", "--metrics", ""]) == 0
    assert not captured["run_watch"]["metrics"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["load", "-n", "abc", "http://x/"], "argument -n: 'abc' is not a positive integer"),
        (["load", "-n", "0", "http://x/"], "argument -n: '0' is not a positive integer"),
        (["load", "-z", "10x", "http://x/"], "argument -z: '10x' is not a duration"),
        (["load", "-q", "-1", "http://x/"], "argument -q: '-1' is not a number of at least 0"),
        (["load", "-n", "5", "-c", "10", "http://x/"], "-n cannot be less than -c"),
        (["load", "ftp://x/"], "argument URL: 'ftp://x/' is not an http(s) URL"),
        (["load", "127.0.0.1:8080/"], "argument URL: '127.0.0.1:8080/' is not an http(s) URL"),
        (["load", "-t", "0", "http://x/"], "-t 0 (no timeout) needs -z"),
        (
            ["load", "--plot", "/nonexistent/dir/p.png", "http://x/"],
            "--plot /nonexistent/dir/p.png: cannot write it: no such file or directory",
        ),
        (["load", "-H", "nocolon", "http://x/"], "argument -H: 'nocolon' is not a header"),
        (["load", "-m", "BREW", "http://x/"], "argument -m: invalid choice: 'BREW'"),
        (["load", "--plot", "out.jpg", "http://x/"], "--plot needs a .png file name"),
        (
            ["load", "-host", "http://app.example.com", "http://x/"],
            "argument -host/--host: 'http://app.example.com' is not a host name for the Host "
            "header: give the name alone, e.g. app.example.com",
        ),
        (["load", "--bogus", "http://x/"], "unrecognized arguments: --bogus"),
        (["load"], "the following arguments are required: URL"),
        (["call", "--in", "x"], "argument --in: 'x' is not a positive integer"),
        (
            ["call", "--processes", "-1"],
            "argument --processes: '-1' is not an integer of at least 0",
        ),
        (["call", "--host", "ftp://gw"], "argument --host: 'ftp://gw' is not a gateway address"),
        (["call", "--host", "http://gw/app"], "argument --host: 'http://gw/app' is not a gateway"),
        (
            ["call", "--domain", "http://app.example.com"],
            "argument --domain: 'http://app.example.com' is not a host name for the Host header: "
            "give the name alone, e.g. app.example.com",
        ),
        (["call", "--trace", "--traces", ""], "--trace needs the trace store"),
        (["watch"], "the following arguments are required: NAME"),
        (
            ["watch", "s", "--metrics", "127.0.0.1:8428"],
            "argument --metrics: '127.0.0.1:8428' is not an http(s) URL",
        ),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_flags_are_a_usage_error_with_exit_2(
    captured: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    # The usage line of the command that was given, as argparse prints it for its own checks.
    assert err.startswith(f"usage: faas {argv[0]} " if argv else "usage: faas [-h]"), err
    assert err.splitlines()[-1].startswith(f"faas {argv[0]}: error: " if argv else "faas: error")
    assert message in " ".join(err.split())
    assert captured == {}


def test_endpoint_prefers_flags_then_environment() -> None:
    env = {"KNATIVE_HOST": "env-host", "KNATIVE_DOMAIN": "env.domain"}
    assert resolve("flag-host", None, "bosun", env) == Endpoint("flag-host", "env.domain")
    assert resolve(None, None, "bosun", env) == Endpoint("env-host", "env.domain")


def test_without_values_or_pulumi_the_message_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(
        OpsError, match="pass --host and --domain, set KNATIVE_HOST and KNATIVE_DOMAIN"
    ):
        resolve(None, None, "bosun", {})


def _fake_pulumi(tmp_path: Path, outputs: dict[str, str], code: int = 0) -> None:
    # The Pulumi CLI is an external edge: a script that answers `stack output --json`.
    script = tmp_path / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        f"[ \"$1 $2 $3 $4 $5\" = 'stack output --json --stack bosun' ] || exit 9\n"
        f"echo '{json.dumps(outputs)}'\n"
        + ("echo 'error: no stack named bosun' >&2\n" if code else "")
        + f"exit {code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_endpoint_from_the_stack_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pulumi(tmp_path, {"ingressHost": "gw.example.com", "routeDomain": "app.example.com"})
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve(None, None, "bosun", {}) == Endpoint("gw.example.com", "app.example.com")


def test_a_failing_stack_lookup_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_pulumi(tmp_path, {}, code=255)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OpsError, match="pulumi stack output --stack bosun failed: error: no stack"):
        resolve(None, None, "bosun", {})


def test_call_through_a_gateway_sends_the_host_header(capsys: pytest.CaptureFixture[str]) -> None:
    with run_service() as svc:
        host = svc.url.removeprefix("http://")
        code = cli.main(["call", "--host", host, "--domain", "myfirstserverlessapp.example.com",
                         "--nap", "0", "--json"])  # fmt: skip
        assert code == 0
        body = json.loads(capsys.readouterr().out)
        assert body["highest_prime"] == 9973
        assert cli.main(["call", "--host", host, "--domain", "d", "--nap", "0", "--in", "2"]) == 1
        captured = capsys.readouterr()
        assert captured.out.startswith("in: got '2', which is too small")
        assert "faas: HTTP 400 from" in captured.err


def test_call_prints_the_equivalent_curl(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["call", "--host", "gw.example.com", "--domain", "app.example.com", "--curl"]) == 0
    )
    assert capsys.readouterr().out == (
        "curl -H 'Host: app.example.com' 'http://gw.example.com/?in=10000&nap=3&processes=50'\n"
    )


def test_call_host_may_be_a_url_whose_scheme_is_used(capsys: pytest.CaptureFixture[str]) -> None:
    with run_service() as svc:
        assert cli.main(["call", "--host", f"{svc.url}/", "--domain", "d", "--nap", "0",
                         "--json"]) == 0  # fmt: skip
        assert json.loads(capsys.readouterr().out)["highest_prime"] == 9973
    assert cli.main(["call", "--host", "https://gw.example.com", "--domain", "d", "--curl"]) == 0
    assert capsys.readouterr().out == (
        "curl -H 'Host: d' 'https://gw.example.com/?in=10000&nap=3&processes=50'\n"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KNATIVE_HOST": "ftp://gw"},
            "KNATIVE_HOST 'ftp://gw' is not a gateway address such as 10.0.0.1:80 or "
            "http://127.0.0.1:8080",
        ),
        (
            {"KNATIVE_DOMAIN": "http://app.example.com"},
            "KNATIVE_DOMAIN 'http://app.example.com' is not a host name for the Host header: "
            "give the name alone, e.g. app.example.com",
        ),
    ],
)
def test_call_refuses_a_host_or_domain_from_the_environment_in_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.setenv("KNATIVE_HOST", "gw")
    monkeypatch.setenv("KNATIVE_DOMAIN", "d")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["call", "--curl"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"faas: error: {message}"]


@pytest.mark.parametrize(
    ("flags", "missing"),
    [
        (
            ["--host", "gw"],
            "no route domain: pass --domain, set KNATIVE_DOMAIN, or install the "
            "pulumi CLI to read it from the stack's outputs",
        ),
        (
            ["--domain", "d"],
            "no gateway host: pass --host, set KNATIVE_HOST, or install the "
            "pulumi CLI to read it from the stack's outputs",
        ),
        (
            [],
            "no gateway host and route domain: pass --host and --domain, set KNATIVE_HOST and "
            "KNATIVE_DOMAIN, or install the pulumi CLI to read them from the stack's outputs",
        ),
    ],
)
def test_call_names_what_is_missing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    missing: str,
) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("KNATIVE_HOST", raising=False)
    monkeypatch.delenv("KNATIVE_DOMAIN", raising=False)
    assert cli.main(["call", *flags]) == 1
    assert capsys.readouterr().err.splitlines() == [f"faas: error: {missing}"]


def test_call_that_times_out_says_after_how_long(capsys: pytest.CaptureFixture[str]) -> None:
    with run_service() as svc:
        code = cli.main(["call", "--host", svc.url, "--domain", "d", "--nap", "3", "-t", "0.5"])
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"faas: error: GET {svc.url}/?in=10000&nap=3&processes=50 (Host: d): timed out after 0.5 s"
    )


def test_call_processes_0_is_the_services_one_term(capsys: pytest.CaptureFixture[str]) -> None:
    with run_service() as svc:
        assert cli.main(["call", "--host", svc.url, "--domain", "d", "--nap", "0",
                         "--processes", "0"]) == 0  # fmt: skip
    assert "Method C calculated pi as 4.000000 using 0 processes" in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["call"], ["load"], ["watch"]])
def test_help_shows_no_backticks(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main([*command, "--help"])
    assert caught.value.code == 0
    assert "`" not in capsys.readouterr().out


def test_call_help_names_each_value_and_its_default(
    captured: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["call"]) == 0
    defaults = captured["run_call"]
    with pytest.raises(SystemExit):
        cli.main(["call", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option, metavar, key in [
        ("--in", "N", "in_"), ("--nap", "SECONDS", "nap"), ("--processes", "N", "processes"),
        ("--timeout", "SECONDS", "timeout"),
    ]:  # fmt: skip
        described = re.search(rf"{option} {metavar} ([^(]+)\(default: ([0-9.]+)\)", text)
        assert described, f"{option} {metavar} with a help text and its default in: {text}"
        assert float(described.group(2)) == defaults[key]
    assert "IN_" not in text


def test_call_to_nothing_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port()
    assert cli.main(["call", "--host", f"127.0.0.1:{closed}", "--domain", "d", "-t", "2"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"faas: error: GET http://127.0.0.1:{closed}/?in=10000&nap=3&processes=50 (Host: d): "
        "connection refused"
    ]


def test_the_console_script_is_installed() -> None:
    faas = shutil.which("faas", path=str(Path(sys.executable).parent))
    assert faas is not None
    done = subprocess.run([faas, "load", "--help"], capture_output=True, text=True, check=True)
    assert "-z Z" in done.stdout
    assert "--watch NAME" in done.stdout


def test_call_with_trace_follows_its_own_trace_into_the_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The app continues faas's traceparent and exports to the store; faas prints the tree."""
    with ZipkinReceiver().running() as store:
        collector = store.endpoint
        with run_service(OTEL_EXPORTER_ZIPKIN_ENDPOINT=collector, OTEL_SERVICE_NAME="app",
                         OTEL_BSP_SCHEDULE_DELAY="100") as svc:  # fmt: skip
            traces = collector.removesuffix("/api/v2/spans")
            code = cli.main(["call", "--host", svc.url, "--domain", "d", "--nap", "1",
                             "--trace", "--traces", traces])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "Method B napped for 1 seconds" in out
    header, *lines = out.split("\nTrace ", 1)[1].splitlines()
    trace_id = header.split()[0]
    assert header == f"{trace_id} (5 spans), from {traces}:"
    assert {span["traceId"] for span in store.spans} == {trace_id}
    names = [line.split("  app  ")[1] for line in lines]
    assert names == ["GET /", "└─ heavyLifting", "   └─ heavyweightMethodA",
                     "      └─ heavyweightMethodB", "         └─ heavyweightMethodC"]  # fmt: skip
    method_b = next(line for line in lines if "heavyweightMethodB" in line)
    assert float(method_b.split()[2]) >= 1.0  # start offset, "s", duration


def test_call_with_trace_and_no_store_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRACES", raising=False)
    with pytest.raises(SystemExit) as usage:
        cli.main(["call", "--host", "gw", "--domain", "d", "--trace"])
    assert usage.value.code == 2
    assert "--trace needs the trace store: --traces URL or $TRACES" in capsys.readouterr().err
    closed = f"http://127.0.0.1:{free_port()}"
    with run_service() as svc:
        code = cli.main(["call", "--host", svc.url, "--domain", "d", "--nap", "0",
                         "--trace", "--traces", closed])  # fmt: skip
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"faas: error: cannot reach the trace store {closed}: ")


def test_call_with_trace_waits_for_the_trace_as_long_as_t_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ZipkinReceiver().running() as store, run_service() as svc:  # the app exports nothing
        traces = store.endpoint.removesuffix("/api/v2/spans")
        started = time.perf_counter()
        code = cli.main(["call", "--host", svc.url, "--domain", "d", "--nap", "0", "--trace",
                         "--traces", traces, "-t", "1.5"])  # fmt: skip
        elapsed = time.perf_counter() - started
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        rf"faas: error: trace [0-9a-f]{{32}}: no span in {traces} within 1.5 s", line
    )
    assert elapsed < 15, "it waited longer than -t for the trace"


def test_call_interrupted_with_ctrl_c_is_one_line_and_exit_130() -> None:
    with (
        run_service() as svc,
        faas("call", "--host", svc.url, "--domain", "d", "--nap", "10") as process,
    ):
        wait_in_flight(svc.url, 1, seconds=60)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert out == ""
    assert err.splitlines() == ["faas: call: interrupted"]
