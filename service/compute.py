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

# Deterministic Miller-Rabin: below each bound, these strong-probable-prime bases decide
# primality exactly. Below 2^64 they are the best known sets (Jaeschke 1993 for 2, 7, 61; Sinclair
# and others, as collected at miller-rabin.appspot.com and used by sympy.isprime); above, the
# first 12 and 13 primes (Sorenson & Webster 2015). A base is taken mod n, and one that is then 0
# or 1 is skipped.
_WITNESS_BOUNDS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (4_759_123_141, (2, 7, 61)),
    (350_269_456_337, (4230279247111683200, 14694767155120705706, 16641139526367750375)),
    (55_245_642_489_451, (2, 141889084524735, 1199124725622454117, 11096072698276303650)),
    (7_999_252_175_582_851, (2, 4130806001517, 149795463772692060, 186635894390467037,
                             3967304179347715805)),
    (585_226_005_592_931_977, (2, 123635709730000, 9233062284813009, 43835965440333360,
                               761179012939631437, 1263739024124850375)),
    (2**64, (2, 325, 9375, 28178, 450775, 9780504, 1795265022)),
    (318_665_857_834_031_151_167_461, (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)),
    (3_317_044_064_679_887_385_961_981, (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)),
)  # fmt: skip
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
    for base in witnesses:
        a = base % n
        if a < 2:
            continue
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
