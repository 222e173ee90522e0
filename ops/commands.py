"""What each `faas` command does, behind the argument parsing of ``ops/cli.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ops.call import call, curl_for, url_for
from ops.endpoint import resolve
from ops.plot import plot
from ops.printer import print_report
from ops.report import Report
from ops.requester import Run, Work, execute
from ops.trace import Traceparent, tree, wait_for_trace
from ops.watch import Sample, Timeline, WatchError, watch_pods

FAILED = 1  # the command could not do its job; one line on stderr says why
WATCH_FAILED = 3  # faas load --watch: the load ran and its report is printed; the watch failed


def run_call(
    *,
    stack: str,
    host: str | None,
    domain: str | None,
    in_: int,
    nap: int,
    processes: int,
    as_json: bool,
    curl: bool,
    timeout: float,
    traces: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the app's answer (or, with ``curl``, the equivalent curl command); with
    ``traces`` (a Zipkin's URL), send a trace of our own and print its spans from its API."""
    out = out or sys.stdout
    endpoint = resolve(host, domain, stack)
    url = url_for(endpoint, in_, nap, processes)
    if curl:
        out.write(curl_for(endpoint, url, as_json) + "\n")
        return 0
    parent = Traceparent.new() if traces else None
    extra = {"traceparent": parent.header} if parent else None
    status, body = asyncio.run(call(endpoint, url, as_json, timeout, extra))
    out.write(body if body.endswith("\n") else body + "\n")
    if status >= 400:
        print(f"faas: HTTP {status} from {url}", file=sys.stderr)
        return 1
    if traces and parent:
        spans = asyncio.run(wait_for_trace(traces, parent.trace_id, timeout=timeout))
        out.write(f"\nTrace {parent.trace_id} ({len(spans)} spans), from {traces}:\n")
        out.write("".join(f"{line}\n" for line in tree(spans)))
    return 0


def _on_ctrl_c(handler: Callable[[], None]) -> None:
    # Outside the main thread there is no Ctrl-C to catch.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, handler)


def _interrupt_on_ctrl_c(run: Run, err: TextIO) -> None:
    """The first Ctrl-C stops the load (the requests in flight finish), a second one cancels
    the requests in flight too."""

    def interrupt() -> None:
        if run.stop.is_set():
            run.abort("interrupted")
            return
        run.stop.set()
        err.write("\nfaas: load: stopping; the requests in flight finish (Ctrl-C again cancels "
                  "them)\n")  # fmt: skip
        err.flush()

    _on_ctrl_c(interrupt)


def _progress(err: TextIO, timeline: Timeline | None) -> Callable[[Run], None]:
    def tick(run: Run) -> None:
        done = len(run.results)
        errors = sum(1 for r in run.results if r.error)
        line = (
            f"\r  {run.elapsed:6.1f} s  {done} requests  {errors} errors  "
            f"{done / run.elapsed if run.elapsed else 0:.1f} req/s"
        )
        if timeline is not None and timeline.samples:
            last = timeline.samples[-1]
            line += f"  replicas {last.ready}/{last.pods}"
            if last.desired is not None:
                line += f" (desired {last.desired})"
        err.write(line + "   ")
        err.flush()

    return tick


async def _until_gone(watching: asyncio.Task[Timeline], ends: set[asyncio.Event],
                      seconds: float) -> None:  # fmt: skip
    """After the load: until one of ENDS is set (no pod left, Ctrl-C), at once if the watch has
    already ended (it failed), at most SECONDS."""
    if seconds <= 0 or any(end.is_set() for end in ends):
        return
    waits = {asyncio.create_task(end.wait()) for end in ends}
    await asyncio.wait({watching, *waits}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()


async def _load(
    run: Run,
    *,
    watch: str | None,
    namespace: str | None,
    watch_after: float,
    metrics: str | None,
    err: TextIO,
    live: bool,
) -> tuple[Timeline | None, WatchError | None]:
    """Run the load; with WATCH, follow the replicas meanwhile and after it (until no pod is
    left, at most WATCH_AFTER seconds). The timeline, or the reason it could not be kept."""
    _interrupt_on_ctrl_c(run, err)
    if not watch:
        await execute(run, _progress(err, None) if live else None)
        return None, None
    timeline = Timeline()
    watch_stop, load_over = asyncio.Event(), asyncio.Event()
    gone = asyncio.Event()  # set once the load is over and the service has no pod left

    def back_at_zero(sample: Sample) -> None:
        if load_over.is_set() and sample.pods + sample.terminating == 0:
            gone.set()

    watching = asyncio.create_task(
        watch_pods(watch, namespace, timeline, watch_stop, started=time.perf_counter(),
                   on_sample=back_at_zero, metrics=metrics)
    )  # fmt: skip
    await execute(run, _progress(err, timeline) if live else None)
    load_over.set()
    if timeline.samples:
        back_at_zero(timeline.samples[-1])
    await _until_gone(watching, {run.stop, gone}, watch_after)
    watch_stop.set()
    try:
        await watching
    except WatchError as error:
        return None, error
    except Exception as error:  # the load's report must not be lost
        return None, WatchError(f"{type(error).__name__}: {' '.join(str(error).split())}")
    return timeline, None


def run_load(
    *,
    work: Work,
    as_json: bool,
    watch: str | None,
    namespace: str | None,
    watch_after: float,
    plot_path: Path | None,
    metrics: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Load the URL as hey does; optionally follow the replicas (and, with ``metrics``,
    Knative's desired and requested pods) and draw them.

    Returns 0, or WATCH_FAILED when the replicas could not be watched: the load still runs and
    its report (and plot) is printed, then one line saying why the watch failed.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    live = err.isatty() and not as_json

    async def main() -> tuple[Run, Timeline | None, WatchError | None]:
        run = Run(work)
        timeline, problem = await _load(
            run, watch=watch, namespace=namespace, watch_after=watch_after, metrics=metrics,
            err=err, live=live,
        )  # fmt: skip
        if live:
            err.write("\n")
        return run, timeline, problem

    run, timeline, problem = asyncio.run(main())
    report = Report.of(run.results, run.elapsed)
    if as_json:
        document: dict[str, object] = {"report": report.as_dict()}
        if timeline is not None:
            document["replicas"] = {
                "timeline": [s.__dict__ for s in timeline.samples],
                "summary": timeline.summary(),
                "notes": [{"t": t, "note": note} for t, note in timeline.notes],
            }
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        print_report(report, out)
        if timeline is not None:
            print_timeline(timeline, out)
    if plot_path is not None:
        samples = timeline.samples if timeline else []
        plot(plot_path, run.results, samples, f"{work.method} {work.url}")
        err.write(f"plot written to {plot_path}\n")
    if problem is not None:
        err.write(f"faas: watch: {problem}\n")
        return WATCH_FAILED
    return 0


def _sample_line(sample: Sample) -> str:
    line = f"  {sample.t:7.1f} s  ready {sample.ready}/{sample.pods}"
    line += f"  terminating {sample.terminating}"
    if sample.desired is not None or sample.requested is not None:
        shown = ["-" if n is None else str(n) for n in (sample.desired, sample.requested)]
        line += f"  desired {shown[0]}  requested {shown[1]}"
    return line


def print_timeline(timeline: Timeline, out: TextIO) -> None:
    out.write("Replica timeline (ready/live pods, terminating apart):\n")
    for sample in timeline.samples:
        out.write(_sample_line(sample) + "\n")
    summary = timeline.summary()

    def seconds(value: float | None) -> str:
        return "not observed" if value is None else f"{value:.1f} s"

    out.write("\nReplica summary:\n")
    out.write(f"  First ready pod:\t{seconds(summary['first_ready_seconds'])}\n")
    out.write(f"  Peak replicas:\t{summary['peak_ready']} ready, {summary['peak_pods']} pods\n")
    if summary["peak_desired"] is not None:
        out.write(
            f"  Knative:\tdesired {summary['peak_desired']} pods at the peak, "
            f"requested {summary['peak_requested']} (bounded by max-scale)\n"
        )
    out.write(f"  Back to zero:\t{seconds(summary['back_to_zero_seconds'])}\n")
    out.write(f"  Last pod gone:\t{seconds(summary['all_gone_seconds'])}\n")
    for t, note in timeline.notes:
        out.write(f"  Note at {t:.1f} s:\t{note}\n")
    out.write("\n")


def run_watch(
    *,
    service: str,
    namespace: str | None,
    metrics: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the replica timeline live until Ctrl-C, then its summary; FAILED if it cannot."""
    out = out or sys.stdout
    err = err or sys.stderr

    async def main() -> Timeline:
        stop = asyncio.Event()
        _on_ctrl_c(stop.set)
        timeline = Timeline()

        def show(sample: Sample) -> None:
            out.write(_sample_line(sample) + "\n")
            out.flush()

        def warn(note: str) -> None:
            err.write(f"faas: watch: {note}\n")

        return await watch_pods(
            service, namespace, timeline, stop, on_sample=show, on_note=warn, metrics=metrics
        )

    try:
        timeline = asyncio.run(main())
    except WatchError as error:
        err.write(f"faas: watch: {error}\n")
        return FAILED
    print_timeline(timeline, out)
    return 0
