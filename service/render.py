"""Responses in the three media types: text (the original's), HTML for browsers, JSON."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from service.lifting import Outcome
from service.params import Limits

BANNER = (
    "______                                      _          \n"
    "| ___ \\                                    (_)         \n"
    "| |_/ / __ _ ______ _  __ _ _ ____   _____  _  ___ ___ \n"
    "| ___ \\/ _` |_  / _` |/ _` | '__\\ \\ / / _ \\| |/ __/ _ \\\n"
    "| |_/ / (_| |/ / (_| | (_| | |   \\ V / (_) | | (_|  __/\n"
    "\\____/ \\__,_/___\\__,_|\\__,_|_|    \\_/ \\___/|_|\\___\\___|\n"
)
MEDIA_TYPES = {"text": "text/plain", "html": "text/html", "json": "application/json"}


def negotiate(accept: str) -> str:
    """Pick text, html or json from an Accept header; text when nothing else is preferred."""
    best, best_q = "text", 0.0
    for rank, part in enumerate(accept.split(",")):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # Earlier entries win ties, as browsers list text/html first.
        q -= rank * 1e-6
        for name, media_type in MEDIA_TYPES.items():
            if media.strip().lower() == media_type and q > best_q:
                best, best_q = name, q
    return best


def _lines(outcome: Outcome) -> list[str]:
    q = outcome.query
    return [
        f"Method A calculated the highest prime below {q.in_} as {outcome.highest_prime}",
        f"Method B napped for {outcome.napped} seconds",
        f"Method C calculated pi as {outcome.pi:.6f} using {q.processes} processes",
    ]


def _page(colour: str, body: str, title: str = "myfirstserverlessapp") -> str:
    return (
        f"<!doctype html>\n<html><head><meta charset=utf-8><title>{escape(title)}</title></head>"
        f'<body><pre style="color: {colour}">{escape(BANNER)}</pre>\n{body}\n</body></html>\n'
    )


def result(fmt: str, outcome: Outcome, colour: str, revision: str) -> Response:
    if fmt == "json":
        q = outcome.query
        return JSONResponse(
            {
                "in": q.in_,
                "nap": q.nap,
                "processes": q.processes,
                "highest_prime": outcome.highest_prime,
                "napped_seconds": outcome.napped,
                "pi": outcome.pi,
                "pi_workers": outcome.workers,
                "durations_seconds": outcome.durations,
                "revision": revision,
            }
        )
    if fmt == "html":
        paragraphs = "\n".join(f"<p>{escape(line)}</p>" for line in _lines(outcome))
        return HTMLResponse(_page(colour, paragraphs))
    return PlainTextResponse(BANNER + "\n" + "\n".join(_lines(outcome)) + "\n")


def _usage_text(limits: Limits) -> str:
    ranges = limits.ranges()
    rows = {
        "in": "method A finds the highest prime strictly below this number",
        "nap": "method B sleeps this many seconds",
        "processes": "method C sums this many + 1 terms of the Leibniz series for pi",
    }
    table = "\n".join(
        f"  {name:<10} {text}, {ranges[name][0]} to {ranges[name][1]}"
        for name, text in rows.items()
    )
    return (
        "Usage: GET /?in=I&nap=N&processes=P\n\n"
        f"{table}\n\n"
        "Example: /?in=10000&nap=3&processes=50\n"
        "Responses are text/plain; send Accept: application/json or add format=json for JSON,\n"
        "Accept: text/html or format=html for a page.\n"
    )


def usage(fmt: str, limits: Limits, colour: str, revision: str) -> Response:
    text = _usage_text(limits)
    if fmt == "json":
        ranges = {name: {"min": lo, "max": hi} for name, (lo, hi) in limits.ranges().items()}
        return JSONResponse(
            {"usage": "/?in=I&nap=N&processes=P", "parameters": ranges, "revision": revision}
        )
    if fmt == "html":
        return HTMLResponse(_page(colour, f"<pre>{escape(text)}</pre>"))
    return PlainTextResponse(BANNER + "\n" + text)


def bad_request(fmt: str, message: str, parameter: str) -> Response:
    if fmt == "json":
        return JSONResponse({"error": message, "parameter": parameter}, status_code=400)
    if fmt == "html":
        body = f"<!doctype html>\n<html><body><p>{escape(message)}</p></body></html>\n"
        return HTMLResponse(body, status_code=400)
    return PlainTextResponse(message + "\n", status_code=400)
