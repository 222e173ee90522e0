"""Renders a Report as hey prints it, to any writer the caller gives."""

from __future__ import annotations

from typing import TextIO

from ops.report import Report

BAR = 40


def print_report(report: Report, out: TextIO) -> None:
    w = out.write
    w("\nSummary:\n")
    w(f"  Total:\t{report.total:.4f} secs\n")
    w(f"  Slowest:\t{report.slowest:.4f} secs\n")
    w(f"  Fastest:\t{report.fastest:.4f} secs\n")
    w(f"  Average:\t{report.average:.4f} secs\n")
    w(f"  Requests/sec:\t{report.rps:.4f}\n")
    if report.count:
        w(f"\n  Total data:\t{report.total_bytes} bytes\n")
        w(f"  Size/request:\t{report.total_bytes // report.count} bytes\n")
    if report.histogram:
        w("\nResponse time histogram:\n")
        top = max(count for _, count in report.histogram) or 1
        for mark, count in report.histogram:
            w(f"  {mark:.3f} [{count}]\t|{'■' * (count * BAR // top)}\n")
    if report.percentiles:
        w("\n\nLatency distribution:\n")
        for p, value in report.percentiles.items():
            w(f"  {p}% in {value:.4f} secs\n")
    if report.status_codes:
        w("\nStatus code distribution:\n")
        for code, count in report.status_codes.items():
            w(f"  [{code}]\t{count} responses\n")
    if report.errors:
        w("\nError distribution:\n")
        for message, count in report.errors.items():
            w(f"  [{count}]\t{message}\n")
    w("\n")
