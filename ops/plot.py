"""`--plot FILE.png`: requests in flight and replicas against time, one picture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.requester import Result
from ops.watch import Sample


def in_flight(results: list[Result], step: float = 0.1) -> tuple[list[float], list[int]]:
    """Requests in flight sampled every ``step`` seconds, from each request's start and end."""
    if not results:
        return [], []
    end = max(r.start + r.duration for r in results)
    times = [i * step for i in range(int(end / step) + 2)]
    counts = [sum(1 for r in results if r.start <= t < r.start + r.duration) for t in times]
    return times, counts


def _ready(sample: Sample) -> int:
    return sample.ready


def _live(sample: Sample) -> int:
    return sample.pods


def _terminating(sample: Sample) -> int:
    return sample.terminating


def _desired(sample: Sample) -> int:
    return sample.desired or 0


def _requested(sample: Sample) -> int:
    return sample.requested or 0


def plot(path: Path, results: list[Result], samples: list[Sample], title: str) -> None:
    import matplotlib  # noqa: PLC0415 (only --plot needs it, and it is slow to import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, load_axis = plt.subplots(figsize=(10, 5), dpi=100)
    times, counts = in_flight(results)
    load_axis.plot(times, counts, color="tab:blue", label="requests in flight")
    load_axis.set_xlabel("seconds")
    load_axis.set_ylabel("requests in flight", color="tab:blue")
    replica_axis = load_axis.twinx()
    if samples:
        end = max([times[-1] if times else 0.0, samples[-1].t])
        xs = [s.t for s in samples] + [end]
        series: list[tuple[str, Callable[[Sample], int], dict[str, Any]]] = [
            ("ready replicas", _ready, {"color": "tab:green"}),
            ("live pods", _live, {"color": "tab:orange", "linestyle": "--"}),
            ("terminating pods", _terminating, {"color": "tab:gray", "linestyle": ":"}),
        ]
        if any(s.desired is not None for s in samples):
            series += [
                ("desired (Knative)", _desired, {"color": "tab:red", "alpha": 0.6}),
                ("requested (Knative)", _requested, {"color": "tab:purple", "alpha": 0.6,
                                                     "linestyle": "-."}),
            ]  # fmt: skip
        for label, value, style in series:
            ys = [value(s) for s in samples]
            replica_axis.step(xs, [*ys, ys[-1]], where="post", label=label, **style)
    replica_axis.set_ylabel("replicas", color="tab:green")
    # One scale on both sides: a replica per request in flight reads as level lines.
    top = max(load_axis.get_ylim()[1], replica_axis.get_ylim()[1])
    replica_axis.set_ylim(0, top)
    load_axis.set_ylim(0, top)
    load_handles, load_labels = load_axis.get_legend_handles_labels()
    replica_handles, replica_labels = replica_axis.get_legend_handles_labels()
    load_axis.legend(
        load_handles + replica_handles, load_labels + replica_labels,
        loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, frameon=False,
    )  # fmt: skip
    load_axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
