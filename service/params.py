"""Parsing of the query string: three integers, each checked against its allowed range."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from service.settings import MAX_NAP

# A plain decimal integer: ASCII digits, a leading minus at most. No plus sign, no spaces, no
# other digits or separators.
_INTEGER = re.compile(r"(-?)([0-9]+)", re.ASCII)
_ECHO_LIMIT = 40
FORMATS = ("text", "html", "json")


class ParameterError(ValueError):
    """A query parameter is missing, repeated, malformed or out of range."""

    def __init__(self, parameter: str, problem: str, allowed: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {problem}; allowed: {allowed}")


@dataclass(frozen=True)
class Query:
    """A request for the three methods, every value within its range."""

    in_: int
    nap: int
    processes: int


@dataclass(frozen=True)
class Limits:
    """The inclusive ranges of the three parameters."""

    max_in: int
    max_processes: int

    def ranges(self) -> dict[str, tuple[int, int]]:
        return {"in": (3, self.max_in), "nap": (0, MAX_NAP), "processes": (0, self.max_processes)}


def _echo(raw: str) -> str:
    """The received value, quoted and escaped, cut short if it is long."""
    if len(raw) > _ECHO_LIMIT:
        return f"{raw[:_ECHO_LIMIT]!r}... ({len(raw)} characters)"
    return repr(raw)


def _integer(name: str, raw: str, low: int, high: int) -> int:
    """``raw`` as an integer from ``low`` (at least 0) to ``high``, for any length of ``raw``."""
    allowed = f"an integer from {low} to {high}"
    match = _INTEGER.fullmatch(raw)
    if not match:
        raise ParameterError(name, f"got {_echo(raw)}, which is not an integer", allowed)
    sign, digits = match.group(1), match.group(2).lstrip("0") or "0"
    # Measure before converting: int() refuses more than 4300 digits, and a value longer than
    # the bound is out of range whatever its digits are.
    if sign and digits != "0":
        raise ParameterError(name, f"got {_echo(raw)}, which is too small", allowed)
    if len(digits) > len(str(high)) or int(digits) > high:
        raise ParameterError(name, f"got {_echo(raw)}, which is too large", allowed)
    value = int(digits)
    if value < low:
        raise ParameterError(name, f"got {_echo(raw)}, which is too small", allowed)
    return value


def _single(pairs: list[tuple[str, str]], name: str, allowed: str) -> str | None:
    values = [value for key, value in pairs if key == name]
    if len(values) > 1:
        shown = ", ".join(_echo(v) for v in values[:3])
        raise ParameterError(name, f"given {len(values)} times ({shown}), expected once", allowed)
    return values[0] if values else None


def parse_format(pairs: Iterable[tuple[str, str]]) -> str | None:
    """The optional ``format`` parameter (text, html or json)."""
    allowed = ", ".join(FORMATS)
    raw = _single(list(pairs), "format", allowed)
    if raw is None:
        return None
    if raw not in FORMATS:
        raise ParameterError("format", f"got {_echo(raw)}", allowed)
    return raw


def parse_query(pairs: Iterable[tuple[str, str]], limits: Limits) -> Query | None:
    """Parse ``in``, ``nap`` and ``processes``; None when none of them is given (usage page)."""
    pairs = list(pairs)
    ranges = limits.ranges()
    if not any(key in ranges for key, _ in pairs):
        return None
    values: dict[str, int] = {}
    for name, (low, high) in ranges.items():
        allowed = f"an integer from {low} to {high}"
        raw = _single(pairs, name, allowed)
        if raw is None:
            raise ParameterError(name, "missing", allowed)
        values[name] = _integer(name, raw, low, high)
    return Query(in_=values["in"], nap=values["nap"], processes=values["processes"])
