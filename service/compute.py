"""The arithmetic of the three methods: plain functions, no HTTP, no tracing.

Method B (the nap) is only a sleep and lives with the delegation chain in ``lifting.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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


# The terms are summed in blocks, each block's sum correctly rounded (math.fsum), and the blocks
# sit at fixed places: the first _FIRST_BLOCK terms, then _BLOCK terms at a time. So the sums
# are the same bits however many workers share the blocks and whichever pool runs them; and a
# block is short enough for fsum over a C iterator, which holds the GIL, to let the event loop
# thread in every millisecond or so. The first terms carry nearly all of the sum's magnitude:
# summed apart, their rounding error is cheap to take back exactly (leibniz_sum).
_FIRST_BLOCK = 64
_BLOCK = 16_384


def _terms(start: int, stop: int) -> Iterator[float]:
    """The Leibniz terms 4(-1)^k/(2k+1) for start <= k < stop (positive ones, then negative)."""
    first_even = start + (start % 2)
    first_odd = start + 1 - (start % 2)
    positive = map(truediv, repeat(4.0), range(2 * first_even + 1, 2 * stop + 1, 4))
    negative = map(truediv, repeat(-4.0), range(2 * first_odd + 1, 2 * stop + 1, 4))
    return chain(positive, negative)


def _block_bounds(start: int, stop: int) -> list[range]:
    """The blocks from ``start`` (0, or where a block starts) to ``stop``. A sum of at most
    _BLOCK terms is one block: fsum gives it exactly, with nothing to take back."""
    if start == 0 and stop <= _BLOCK:
        return [range(0, stop)]
    blocks = []
    while start < stop:
        end = _FIRST_BLOCK if start == 0 else start + _BLOCK
        blocks.append(range(start, min(end, stop)))
        start = end
    return blocks


def leibniz_blocks(start: int, stop: int) -> list[float]:
    """The correctly rounded sum of each block of terms from ``start`` to ``stop``, where
    ``start`` is where a block starts (as for every range of ``leibniz_chunks``)."""
    return [math.fsum(_terms(b.start, b.stop)) for b in _block_bounds(start, stop)]


def leibniz_chunks(processes: int, workers: int, min_chunk: int = 50_000) -> list[range]:
    """Split the processes+1 terms of method C into at most ``workers`` contiguous ranges of
    whole blocks.

    Small sums stay in one range: a worker costs more than summing a few thousand terms.
    """
    terms = processes + 1
    blocks = _block_bounds(0, terms)
    count = max(1, min(workers, terms // min_chunk, len(blocks)))
    size, extra = divmod(len(blocks), count)
    edges = [0]
    for i in range(count):
        edges.append(edges[-1] + size + (1 if i < extra else 0))
    return [range(blocks[a].start, blocks[b - 1].stop) for a, b in pairwise(edges)]


def leibniz_sum(processes: int, sums: list[float]) -> float:
    """Method C's result, math.fsum of all its terms, from the sum of each block (in order).

    fsum of the block sums is within one ulp of it; it is exactly it when the block sums'
    rounding errors cannot move the total across a rounding boundary. Each block's error is at
    most half an ulp of its sum, tiny but for the first block, whose remainder is added back
    exactly. Where the bound still leaves the total undecided (about one sum in a hundred), the
    remainders of the blocks that can be furthest off are added too, one block, then two, four
    and so on, until it is decided: a block or two of extra work where it is needed at all.
    """
    blocks = _block_bounds(0, processes + 1)
    parts = [[s] for s in sums]  # each block's sum, then the remainders added back
    refine = [0] if len(parts) > 1 else []
    batch = 1
    while True:
        for b in refine:
            parts[b].append(math.fsum(chain(_terms(blocks[b].start, blocks[b].stop),
                                            (-p for p in parts[b]))))  # fmt: skip
        flat = [p for block in parts for p in block]
        total = math.fsum(flat)
        # The blocks whose last part is not exact, and how far off all of them can be.
        open_ = [b for b, block in enumerate(parts) if len(block) == 1 or block[-1] != 0]
        if not open_ or len(parts) == 1:
            return total  # the parts are exact: fsum rounds their sum correctly
        off = math.fsum([*flat, -total])  # the parts' sum minus the total
        slack = (math.ulp(off) + sum(math.ulp(parts[b][-1]) for b in open_)) / 2
        below = (total - math.nextafter(total, -math.inf)) / 2
        above = (math.nextafter(total, math.inf) - total) / 2
        if -below < off - slack and off + slack < above:
            return total  # the exact sum of the terms rounds to it too
        refine = sorted(open_, key=lambda b: math.ulp(parts[b][-1]), reverse=True)[:batch]
        batch *= 2


def leibniz_pi(processes: int, workers: int = 1) -> float:
    """Method C computed in one thread: the (processes+1)-term Leibniz partial sum."""
    chunks = leibniz_chunks(processes, workers)
    return leibniz_sum(processes, [s for c in chunks for s in leibniz_blocks(c.start, c.stop)])
