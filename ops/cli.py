"""faas: call the app through the gateway, load it like hey, watch its replicas scale.

faas call [--stack bosun] [--host HOST --domain DOMAIN] [--in N --nap SECONDS --processes N]
          [--json] [--curl] [-t SECONDS] [--trace [--traces URL]]
faas load [hey's flags] [--json] [--watch NAME [--metrics URL]] [--plot FILE.png] URL
faas watch NAME [--metrics URL]

Exit status: 0 done; 1 the command failed (one line on stderr says why); 2 bad arguments (the
command's usage and one line); 3 (faas load --watch) the load ran and its report is printed,
but the replicas could not be watched; 130 interrupted (Ctrl-C) before faas call was done.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from infra.rules import duration_seconds
from ops import commands
from ops.endpoint import OpsError, gateway, host_name
from ops.requester import Work

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


INTERRUPTED = 130  # as a shell reports a command ended by SIGINT


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer of at least 0")
    return int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of at least 0")
    return value


def _duration(text: str) -> float:
    seconds = duration_seconds(text)
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 10s, 2m or 1m30s")
    return seconds


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or " " in name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a header such as 'Accept: text/html'")
    return name.strip(), value.strip()


def _host_header(text: str) -> str:
    try:
        return host_name(text)
    except OpsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _gateway(text: str) -> str:
    try:
        gateway(text, "")
    except OpsError as error:
        raise argparse.ArgumentTypeError(str(error).strip()) from None
    return text


def _target(text: str) -> str:
    """The URL to load: http(s) with a host."""
    if not text:
        raise argparse.ArgumentTypeError("'' is not an http(s) URL")
    return _http_url(text)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own (whose usage line a bad argument prints)."""
    description, exit_status = __doc__.splitlines()[0], __doc__.rsplit("\n\n", 1)[-1]
    parser = argparse.ArgumentParser(prog="faas", description=description, epilog=exit_status)
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    call = _command(commands_, "call", "one request through the Istio gateway")
    call.add_argument("--stack", default="bosun", help="Pulumi stack to read outputs from")
    call.add_argument(
        "--host", type=_gateway,
        help="gateway host[:port], or http(s)://host[:port] to choose the scheme "
        "(else KNATIVE_HOST, else the stack)",
    )  # fmt: skip
    call.add_argument(
        "--domain", type=_host_header,
        help="route domain for Host (else KNATIVE_DOMAIN, else the stack)",
    )  # fmt: skip
    call.add_argument(
        "--in", dest="in_", type=_positive_int, default=10000, metavar="N",
        help="method A: the highest prime below N (default: %(default)s)",
    )  # fmt: skip
    call.add_argument(
        "--nap", type=int, default=3, metavar="SECONDS",
        help="method B: sleep SECONDS (default: %(default)s)",
    )  # fmt: skip
    call.add_argument(
        "--processes", type=_non_negative_int, default=50, metavar="N",
        help="method C: pi from N+1 Leibniz terms (default: %(default)s)",
    )  # fmt: skip
    call.add_argument("--json", action="store_true", help="ask for JSON")
    call.add_argument("--curl", action="store_true", help="print the equivalent curl and exit")
    call.add_argument(
        "-t", "--timeout", type=_non_negative_float, default=30.0, metavar="SECONDS",
        help="give up on the answer, and then on the trace, after SECONDS; 0: never "
        "(default: %(default)g)",
    )  # fmt: skip
    call.add_argument(
        "--trace", action="store_true",
        help="send a sampled W3C traceparent of our own, then print the trace's spans from "
        "the trace store",
    )  # fmt: skip
    call.add_argument(
        "--traces", type=_http_url, default=os.environ.get("TRACES") or None, metavar="URL",
        help="the trace store: a Zipkin (default: $TRACES)",
    )  # fmt: skip

    load = _command(commands_, "load", "load a URL as hey does")
    load.epilog = "Exit status 3: the load ran and its report is printed; --watch failed."
    load.add_argument("url", metavar="URL", type=_target)
    load.add_argument("-n", type=_positive_int, default=200, help="number of requests (200)")
    load.add_argument("-c", type=_positive_int, default=50, help="concurrent workers (50)")
    load.add_argument(
        "-q", type=_non_negative_float, default=0.0, help="rate limit per worker, requests/s"
    )
    load.add_argument("-z", type=_duration, help="duration, e.g. 120s; overrides -n")
    load.add_argument(
        "-t",
        type=_non_negative_float,
        default=20.0,
        help="timeout per request, s; 0: none, with -z only (20)",
    )
    load.add_argument("-m", default="GET", choices=METHODS, help="HTTP method")
    load.add_argument("-H", action="append", type=_header, default=[], help="header, repeatable")
    load.add_argument("-host", "--host", dest="host", type=_host_header,
                      help="Host header: a name, not a URL")  # fmt: skip
    load.add_argument("--json", action="store_true", help="the report as JSON")
    load.add_argument("--watch", metavar="NAME", help="follow the Knative Service's replicas")
    load.add_argument("--namespace", help="namespace of --watch (default: the context's)")
    load.add_argument(
        "--watch-after",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="keep watching after the load until no pod is left, at most S seconds",
    )
    load.add_argument("--plot", type=Path, metavar="FILE.png", help="draw load and replicas")
    _metrics_option(load)

    watch = _command(commands_, "watch", "the replica timeline, until Ctrl-C")
    watch.add_argument("service", metavar="NAME")
    watch.add_argument("--namespace", help="namespace (default: the context's)")
    _metrics_option(watch)
    return parser, {"call": call, "load": load, "watch": watch}


def _http_url(text: str) -> str:
    if not text:
        return text  # --metrics '': none, even with $METRICS set
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL")
    return text


def _metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics", type=_http_url, default=os.environ.get("METRICS") or None, metavar="URL",
        help="a Prometheus API (the local cluster's store: $METRICS) to add Knative's desired "
        "and requested pods from (default: $METRICS; '' for none)",
    )  # fmt: skip


def _command(
    commands_: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    return commands_.add_parser(name, help=summary, description=summary)


def _unwritable(path: Path) -> str | None:
    """Why PATH cannot be written, checked before a long load rather than after it; None if
    it can."""
    existed = path.exists()
    try:
        with path.open("ab"):
            pass
    except OSError as error:
        return (error.strerror or str(error)).lower()
    if not existed:
        path.unlink()
    return None


def _checked(args: argparse.Namespace, usage: argparse.ArgumentParser) -> None:
    """What argparse cannot check one argument at a time: a usage error (exit 2) if wrong."""
    if args.command == "call" and args.trace and not args.traces:
        usage.error("--trace needs the trace store: --traces URL or $TRACES")
    if args.command != "load":
        return
    if args.z is None and args.n < args.c:
        usage.error("-n cannot be less than -c")
    if args.z is None and args.t == 0:
        usage.error("-t 0 (no timeout) needs -z: with -n, a server that never answers would "
                    "keep the run from ending")  # fmt: skip
    if args.plot is not None:
        if args.plot.suffix.lower() != ".png":
            usage.error("--plot needs a .png file name")
        if (why := _unwritable(args.plot)) is not None:
            usage.error(f"--plot {args.plot}: cannot write it: {why}")


def _run(args: argparse.Namespace) -> int:
    if args.command == "call":
        return commands.run_call(
            stack=args.stack, host=args.host, domain=args.domain, in_=args.in_,
            nap=args.nap, processes=args.processes, as_json=args.json, curl=args.curl,
            timeout=args.timeout, traces=args.traces if args.trace else None,
        )  # fmt: skip
    if args.command == "load":
        work = Work(
            url=args.url, method=args.m, headers=tuple(args.H), host=args.host, n=args.n,
            concurrency=args.c, qps=args.q, duration=args.z or 0.0, timeout=args.t,
        )  # fmt: skip
        return commands.run_load(
            work=work, as_json=args.json, watch=args.watch, namespace=args.namespace,
            watch_after=args.watch_after, plot_path=args.plot, metrics=args.metrics,
        )  # fmt: skip
    return commands.run_watch(service=args.service, namespace=args.namespace, metrics=args.metrics)


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C ends every command, as faas load's own handler makes it do there: also when faas
    # was started with SIGINT ignored (a shell's background job), which Python would keep.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser, usages = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would name them under the top level's usage line
        usages[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    _checked(args, usages[args.command])
    try:
        return _run(args)
    except OpsError as error:
        print(f"faas: error: {error}", file=sys.stderr)
        return commands.FAILED
    except KeyboardInterrupt:
        print(f"faas: {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
