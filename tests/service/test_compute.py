from __future__ import annotations

from itertools import pairwise

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from service.compute import (
    PRIMALITY_LIMIT,
    highest_prime_below,
    is_prime,
    leibniz_chunks,
    leibniz_pi,
)
from service.settings import DEFAULT_MAX_IN, IN_LIMIT
from tests.utils import leibniz_reference


def test_original_example_values() -> None:
    assert highest_prime_below(10000) == 9973
    assert f"{leibniz_pi(50):.6f}" == "3.161199"


def test_highest_prime_below_is_exact_for_every_small_in() -> None:
    expected = 2
    for n in range(3, 20_000):
        assert highest_prime_below(n) == expected, n
        if sympy.isprime(n):
            expected = n


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=3, max_value=DEFAULT_MAX_IN))
def test_highest_prime_below_matches_sympy_up_to_default_cap(n: int) -> None:
    assert highest_prime_below(n) == sympy.prevprime(n)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=DEFAULT_MAX_IN, max_value=IN_LIMIT))
def test_highest_prime_below_matches_sympy_up_to_configurable_limit(n: int) -> None:
    assert highest_prime_below(n) == sympy.prevprime(n)


@pytest.mark.parametrize(
    "n",
    [
        # strong pseudoprimes to the smaller base sets, where a weaker test would say "prime"
        2047,
        1_373_653,
        25_326_001,
        3_215_031_751,
        2_152_302_898_747,
        3_474_749_660_383,
        341_550_071_728_321,
        3_825_123_056_546_413_051,
        4_759_123_141,  # the (2, 7, 61) bound
        585_226_005_592_931_977,  # the six-base bound
        318_665_857_834_031_151_167_461,
        561,  # Carmichael
        2**61 - 1,  # Mersenne prime
        DEFAULT_MAX_IN,
    ],
)
def test_is_prime_agrees_with_sympy_on_hard_cases(n: int) -> None:
    assert is_prime(n) == sympy.isprime(n)


def test_is_prime_refuses_beyond_its_exact_range() -> None:
    with pytest.raises(ValueError, match="exact only below"):
        is_prime(PRIMALITY_LIMIT + 2)


# Around the blocks (64, then 16,384 terms), the smallest chunk (50,000 terms), the thread and
# process thresholds, and the sizes where the sum was 1 ulp off or depended on PI_WORKERS.
BOUNDARIES = [0, 1, 2, 49, 50, 63, 64, 1_999, 2_000, 16_382, 16_383, 16_384, 16_447, 16_448,
              32_767, 32_768, 49_999, 50_000, 99_999, 100_000, 199_999, 200_000, 327_679,
              1_000_000, 10_000_000]  # fmt: skip


@pytest.mark.parametrize("processes", BOUNDARIES)
def test_leibniz_pi_is_exactly_fsum_of_all_terms(processes: int) -> None:
    assert leibniz_pi(processes, 4).hex() == leibniz_reference(processes).hex()


@pytest.mark.parametrize("processes", [49_999, 99_999, 200_000, 1_000_000])
def test_leibniz_pi_is_the_same_bits_for_any_number_of_workers(processes: int) -> None:
    results = {leibniz_pi(processes, workers).hex() for workers in range(1, 17)}
    assert len(results) == 1, results


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=300_000), st.integers(min_value=2, max_value=16))
def test_leibniz_pi_any_size_and_workers(processes: int, workers: int) -> None:
    assert leibniz_pi(processes, workers).hex() == leibniz_reference(processes).hex()


def test_zero_processes_is_the_first_term() -> None:
    assert leibniz_pi(0) == 4.0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**8), st.integers(min_value=1, max_value=64))
def test_leibniz_chunks_cover_every_term_once_within_the_worker_bound(
    processes: int, workers: int
) -> None:
    chunks = leibniz_chunks(processes, workers)
    assert 1 <= len(chunks) <= workers
    assert chunks[0].start == 0
    assert chunks[-1].stop == processes + 1
    assert all(a.stop == b.start for a, b in pairwise(chunks))
