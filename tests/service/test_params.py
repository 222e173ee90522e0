from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.params import Limits, ParameterError, Query, parse_format, parse_query

LIMITS = Limits(max_in=2**63 - 1, max_processes=10_000_000)
GOOD = [("in", "10000"), ("nap", "3"), ("processes", "50")]


def _with(name: str, value: str | None) -> list[tuple[str, str]]:
    pairs = [(k, v) for k, v in GOOD if k != name]
    return pairs if value is None else [*pairs, (name, value)]


def test_parses_the_original_request() -> None:
    assert parse_query(GOOD, LIMITS) == Query(in_=10000, nap=3, processes=50)


def test_no_parameters_means_usage() -> None:
    assert parse_query([], LIMITS) is None
    assert parse_query([("utm", "x")], LIMITS) is None


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("in", "abc", "'abc', which is not an integer"),
        ("in", "10.5", "'10.5', which is not an integer"),
        ("in", "1e4", "'1e4', which is not an integer"),
        ("in", "", "'', which is not an integer"),
        ("in", "1_000", "'1_000', which is not an integer"),
        ("in", "\u0661\u0662", "which is not an integer"),  # Arabic-Indic digits
        ("in", "2", "'2', which is too small"),
        ("in", "-7", "'-7', which is too small"),
        ("in", "9223372036854775808", "'9223372036854775808', which is too large"),
        ("in", "9" * 5000, "(5000 characters), which is too large"),
        ("nap", "11", "'11', which is too large"),
        ("nap", "-1", "'-1', which is too small"),
        ("processes", "-1", "'-1', which is too small"),
        ("in", "+7", "'+7', which is not an integer"),
        ("in", " 10 ", "' 10 ', which is not an integer"),  # %2010%20
        ("in", "10\u00a0", "which is not an integer"),  # a trailing no-break space
        ("in", "-" + "9" * 5000, "(5001 characters), which is too small"),
        ("in", "-0" + "0" * 4400 + "1", "(4403 characters), which is too small"),
        ("nap", "1" + "0" * 4400, "(4401 characters), which is too large"),
        ("processes", "10000001", "'10000001', which is too large"),
        ("processes", "lots", "'lots', which is not an integer"),
    ],
)
def test_bad_values_name_parameter_value_and_range(name: str, value: str, fragment: str) -> None:
    low, high = LIMITS.ranges()[name]
    with pytest.raises(ParameterError) as caught:
        parse_query(_with(name, value), LIMITS)
    assert caught.value.parameter == name
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert fragment in message
    assert f"an integer from {low} to {high}" in message
    assert len(message) < 200


@pytest.mark.parametrize("name", ["in", "nap", "processes"])
def test_missing_parameter_is_named(name: str) -> None:
    with pytest.raises(ParameterError, match=f"^{name}: missing; allowed: an integer from"):
        parse_query(_with(name, None), LIMITS)


def test_repeated_parameter_is_rejected_with_both_values() -> None:
    with pytest.raises(ParameterError, match=r"^nap: given 2 times \('1', '2'\), expected once"):
        parse_query([*GOOD[:1], ("nap", "1"), ("nap", "2"), GOOD[2]], LIMITS)


def test_leading_zeros_are_plain_integers() -> None:
    query = parse_query([("in", "010000"), ("nap", "00"), ("processes", "050")], LIMITS)
    assert query == Query(in_=10000, nap=0, processes=50)


def test_leading_zeros_of_any_length_are_read_without_int_limits() -> None:
    """Python's int() refuses more than 4300 digits; the value is still just 7 or 0."""
    pairs = [("in", "0" * 4300 + "7"), ("nap", "-" + "0" * 5000), ("processes", "0" * 9000)]
    assert parse_query(pairs, LIMITS) == Query(in_=7, nap=0, processes=0)


def test_zero_processes_is_one_term_as_in_the_original() -> None:
    assert parse_query(_with("processes", "0"), LIMITS) == Query(in_=10000, nap=3, processes=0)


def test_configured_caps_are_enforced() -> None:
    small = Limits(max_in=100, max_processes=10)
    expected = "in: got '101', which is too large; allowed: an integer from 3 to 100"
    with pytest.raises(ParameterError, match=expected):
        parse_query([("in", "101"), ("nap", "0"), ("processes", "5")], small)


def test_format_parameter() -> None:
    assert parse_format([("format", "json")]) == "json"
    assert parse_format([]) is None
    with pytest.raises(ParameterError, match=r"^format: got 'xml'; allowed: text, html, json"):
        parse_format([("format", "xml")])


_names = st.sampled_from(["in", "nap", "processes", "format", "x"])


# Realistic lengths: thousands of characters, digits and signs among them.
_values = st.one_of(
    st.text(max_size=6000),
    st.from_regex(r"-?[0-9]{0,5000}", fullmatch=True),
    st.from_regex(r"[ +\-0\u00a0]{0,3}[0-9]{1,30}[ \u00a0]{0,2}", fullmatch=True),
)


@given(st.lists(st.tuples(_names, _values), max_size=8))
def test_any_query_parses_or_names_a_parameter(pairs: list[tuple[str, str]]) -> None:
    problem: ParameterError | None = None
    try:
        query = parse_query(pairs, LIMITS)
    except ParameterError as error:
        problem, query = error, None
    if problem is not None:
        assert problem.parameter in {"in", "nap", "processes"}
        assert str(problem).startswith(f"{problem.parameter}: ")
    elif query is not None:
        assert 3 <= query.in_ <= LIMITS.max_in
        assert 0 <= query.nap <= 10
        assert 0 <= query.processes <= LIMITS.max_processes
