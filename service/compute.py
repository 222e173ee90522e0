"""The arithmetic of the three methods: plain functions, no HTTP, no tracing.

Method B (the nap) is only a sleep and lives with the delegation chain in ``lifting.py``.
"""

from __future__ import annotations

import math
from itertools import chain, pairwise, repeat
from operator import truediv


def _primes_below(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(limit - 1) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit, p)))
    return [n for n, flag in enumerate(sieve) if flag]


_SMALL_LIMIT = 1000
_SMALL_PRIMES = _primes_below(_SMALL_LIMIT)
_SMALL_PRIME_SET = frozenset(_SMALL_PRIMES)
# One gcd against the product of all primes below 1000 rejects most composites in C.
_PRIMORIAL = math.prod(_SMALL_PRIMES)

# Deterministic Miller-Rabin: below each bound, the first k prime bases decide primality exactly
# (Jaeschke 1993; Jiang & Deng 2014; Sorenson & Webster 2015).
_WITNESS_BOUNDS = (
    (2_047, (2,)),
    (1_373_653, (2, 3)),
    (25_326_001, (2, 3, 5)),
    (3_215_031_751, (2, 3, 5, 7)),
    (2_152_302_898_747, (2, 3, 5, 7, 11)),
    (3_474_749_660_383, (2, 3, 5, 7, 11, 13)),
    (341_550_071_728_321, (2, 3, 5, 7, 11, 13, 17)),
    (3_825_123_056_546_413_051, (2, 3, 5, 7, 11, 13, 17, 19, 23)),
    (318_665_857_834_031_151_167_461, (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)),
    (3_317_044_064_679_887_385_961_981, (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)),
)
PRIMALITY_LIMIT = _WITNESS_BOUNDS[-1][0]


def is_prime(n: int) -> bool:
    """Exact primality for 0 <= n < PRIMALITY_LIMIT."""
    if n < _SMALL_LIMIT:
        return n in _SMALL_PRIME_SET
    if n >= PRIMALITY_LIMIT:
        raise ValueError(f"primality is exact only below {PRIMALITY_LIMIT}")
    if math.gcd(n, _PRIMORIAL) != 1:
        return False
    if n < _SMALL_LIMIT * _SMALL_LIMIT:
        return True  # no prime factor below 1000, so none at all
    witnesses = next(bases for bound, bases in _WITNESS_BOUNDS if n < bound)
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in witnesses:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def highest_prime_below(n: int) -> int:
    """Method A: the highest prime strictly below ``n`` (3 <= n <= PRIMALITY_LIMIT)."""
    if n < 3:
        raise ValueError("there is no prime below 2")
    if n == 3:
        return 2
    candidate = n - 1 if n % 2 == 0 else n - 2
    while not is_prime(candidate):
        candidate -= 2
    return candidate


# fsum over a C iterator holds the GIL for its whole length: summing in blocks of this many
# terms lets the event loop thread in every millisecond or so.
_BLOCK = 16_384


def _leibniz_block(start: int, stop: int) -> float:
    first_even = start + (start % 2)
    first_odd = start + 1 - (start % 2)
    positive = map(truediv, repeat(4.0), range(2 * first_even + 1, 2 * stop + 1, 4))
    negative = map(truediv, repeat(-4.0), range(2 * first_odd + 1, 2 * stop + 1, 4))
    return math.fsum(chain(positive, negative))


def leibniz_chunk(start: int, stop: int) -> float:
    """Sum of the Leibniz terms 4(-1)^k/(2k+1) for start <= k < stop."""
    return math.fsum([_leibniz_block(a, min(a + _BLOCK, stop)) for a in range(start, stop, _BLOCK)])


def leibniz_chunks(processes: int, workers: int, min_chunk: int = 50_000) -> list[range]:
    """Split the processes+1 terms of method C into at most ``workers`` contiguous ranges.

    Small sums stay in one range: a worker costs more than summing a few thousand terms.
    """
    terms = processes + 1
    count = max(1, min(workers, terms // min_chunk))
    size, extra = divmod(terms, count)
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + size + (1 if i < extra else 0))
    return [range(a, b) for a, b in pairwise(bounds)]


def leibniz_pi(processes: int, workers: int = 1) -> float:
    """Method C computed in one thread: the (processes+1)-term Leibniz partial sum."""
    return math.fsum(leibniz_chunk(r.start, r.stop) for r in leibniz_chunks(processes, workers))
