"""Aggregates a run's results into hey's report: summary, histogram, percentiles, codes, errors."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ops.requester import Result

PERCENTILES = (10, 25, 50, 75, 90, 95, 99)
BUCKETS = 10


@dataclass
class Report:
    total: float
    count: int
    fastest: float = 0.0
    slowest: float = 0.0
    average: float = 0.0
    rps: float = 0.0
    total_bytes: int = 0
    histogram: list[tuple[float, int]] = field(default_factory=list)
    percentiles: dict[int, float] = field(default_factory=dict)
    status_codes: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, results: list[Result], total: float) -> Report:
        report = cls(total=total, count=len(results))
        report.errors = dict(Counter(r.error for r in results if r.error).most_common())
        report.status_codes = dict(sorted(Counter(r.status for r in results if r.status).items()))
        done = sorted(r.duration for r in results if r.error is None)
        report.total_bytes = sum(r.size for r in results)
        report.rps = len(results) / total if total > 0 else 0.0
        if not done:
            return report
        report.fastest, report.slowest = done[0], done[-1]
        report.average = sum(done) / len(done)
        report.percentiles = {
            p: done[min(len(done) - 1, len(done) * p // 100)] for p in PERCENTILES
        }
        report.histogram = _histogram(done)
        return report

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_seconds": self.total,
            "requests": self.count,
            "slowest_seconds": self.slowest,
            "fastest_seconds": self.fastest,
            "average_seconds": self.average,
            "requests_per_second": self.rps,
            "total_bytes": self.total_bytes,
            "histogram": [{"mark_seconds": m, "count": c} for m, c in self.histogram],
            "latency_percentiles_seconds": {str(p): v for p, v in self.percentiles.items()},
            "status_codes": {str(code): n for code, n in self.status_codes.items()},
            "errors": self.errors,
        }


def _histogram(done: list[float]) -> list[tuple[float, int]]:
    """hey's histogram: BUCKETS+1 marks from fastest to slowest, each counting up to its mark."""
    fastest, slowest = done[0], done[-1]
    step = (slowest - fastest) / BUCKETS
    marks = [fastest + step * i for i in range(BUCKETS)] + [slowest]
    counts = [0] * len(marks)
    bucket = 0
    for value in done:
        while bucket < len(marks) - 1 and value > marks[bucket]:
            bucket += 1
        counts[bucket] += 1
    return list(zip(marks, counts, strict=True))
