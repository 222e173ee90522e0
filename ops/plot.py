"""`--plot FILE.png`: requests in flight and replicas against time, one picture."""

from __future__ import annotations

from pathlib import Path

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


def plot(path: Path, results: list[Result], samples: list[Sample], title: str) -> None:
    import matplotlib  # noqa: PLC0415 (only --plot needs it, and it is slow to import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, load_axis = plt.subplots(figsize=(10, 4.5), dpi=100)
    times, counts = in_flight(results)
    load_axis.plot(times, counts, color="tab:blue", label="requests in flight")
    load_axis.set_xlabel("seconds")
    load_axis.set_ylabel("requests in flight", color="tab:blue")
    replica_axis = load_axis.twinx()
    if samples:
        end = max([times[-1] if times else 0.0, samples[-1].t])
        xs = [s.t for s in samples] + [end]
        replica_axis.step(xs, [s.ready for s in samples] + [samples[-1].ready], where="post",
                          color="tab:green", label="ready replicas")  # fmt: skip
        replica_axis.step(xs, [s.total for s in samples] + [samples[-1].total], where="post",
                          color="tab:orange", linestyle="--", label="pods")  # fmt: skip
    replica_axis.set_ylabel("replicas", color="tab:green")
    replica_axis.set_ylim(bottom=0)
    load_axis.set_ylim(bottom=0)
    load_handles, load_labels = load_axis.get_legend_handles_labels()
    replica_handles, replica_labels = replica_axis.get_legend_handles_labels()
    load_axis.legend(
        load_handles + replica_handles, load_labels + replica_labels, loc="center right"
    )
    load_axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
