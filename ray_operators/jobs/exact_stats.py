"""Exact means and standard deviations, whatever the blocks a column arrives in.

A float sum depends on the order of its additions: Ray's ``Mean`` and ``Std`` sum each block and
combine the blocks, so the same column split into other blocks (another read parallelism, two
nodes instead of one, the job's driver instead of Ray tasks) gives a mean that differs in its last
bits, and a table standardized with it differs too. Here every value is split exactly into an
integer mantissa and a power of two (``numpy.frexp``), the mantissas are summed per exponent in
int64 limbs that cannot overflow, and the sums of ``x`` and ``x**2`` are exact fractions. A block's
:class:`Moments` add exactly, so the mean (``sum / n``) and the population variance
(``(sum(x**2) - sum(x)**2 / n) / n``, exact, then rounded once) are the correctly rounded values
of the exact ones, for any split. It costs a few array passes per column; pure numpy, no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

#: Rows summed per int64 limb at most: 2**26 values of a limb below 2**37 stay below 2**63.
_CHUNK = 1 << 26


@dataclass(frozen=True)
class Moments:
    """``n`` values, their exact sum and sum of squares; ``finite`` is False once a NaN or an
    infinity was seen (the mean and std are then NaN)."""

    n: int = 0
    total: Fraction = Fraction(0)
    squares: Fraction = Fraction(0)
    finite: bool = True

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.n + other.n,
            self.total + other.total,
            self.squares + other.squares,
            self.finite and other.finite,
        )

    def mean(self) -> float | None:
        if not self.n:
            return None
        return float(self.total / self.n) if self.finite else math.nan

    def std(self) -> float | None:
        """The population standard deviation (``ddof=0``, as Ray's ``StandardScaler`` fits)."""
        if not self.n:
            return None
        if not self.finite:
            return math.nan
        return _sqrt((self.squares - self.total * self.total / self.n) / self.n)


def _sqrt(value: Fraction) -> float:
    """``sqrt(value)``: the exact value rounded once, then the root (IEEE's, correctly rounded);
    a variance past the float range (values near 1e300) is scaled by a power of four first."""
    try:
        return math.sqrt(float(value))
    except OverflowError:
        half = (value.numerator.bit_length() - value.denominator.bit_length()) // 2
        return math.ldexp(math.sqrt(float(value / (1 << (2 * half)))), half)


def moments(values: Any) -> Moments:
    """The exact :class:`Moments` of a 1-d array of numbers (no nulls)."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if not x.size:
        return Moments()
    if not np.isfinite(x).all():
        return Moments(int(x.size), finite=False)
    mantissa, exponent = np.frexp(x)  # x == mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    ints = np.rint(np.ldexp(mantissa, 53)).astype(np.int64)  # exact: |ints| < 2**53
    total = Fraction(0)
    squares = Fraction(0)
    for start in range(0, x.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        total += _exact_sum(ints[part], exponent[part])
        squares += _exact_square_sum(np.abs(ints[part]), exponent[part])
    return Moments(int(x.size), total, squares)


def _groups(exponent: Any) -> tuple[Any, Any, Any]:
    """``(order, starts, exponents)``: the positions sorted by exponent, where each run of one
    exponent starts, and that run's exponent."""
    import numpy as np

    order = np.argsort(exponent, kind="stable")
    sorted_exponent = exponent[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_exponent)) + 1))
    return order, starts, sorted_exponent[starts]


def _scaled(value: int, power: int) -> Fraction:
    return Fraction(value << power) if power >= 0 else Fraction(value, 1 << -power)


def _exact_sum(ints: Any, exponent: Any) -> Fraction:
    """Sum of ``ints * 2**(exponent - 53)``, exactly: per exponent, in two limbs of 27 and 26 bits."""
    import numpy as np

    order, starts, exponents = _groups(exponent)
    signed = ints[order]
    sign = np.sign(signed)
    magnitude = np.abs(signed)
    high = np.add.reduceat(sign * (magnitude >> 27), starts)
    low = np.add.reduceat(sign * (magnitude & ((1 << 27) - 1)), starts)
    out = Fraction(0)
    for h, lo, e in zip(high.tolist(), low.tolist(), exponents.tolist(), strict=True):
        out += _scaled((h << 27) + lo, e - 53)
    return out


def _exact_square_sum(magnitude: Any, exponent: Any) -> Fraction:
    """Sum of ``(magnitude * 2**(exponent - 53))**2``, exactly: each magnitude in three 18-bit
    limbs ``a, b, c`` (value ``a*2**36 + b*2**18 + c``), its square as five limb products."""
    import numpy as np

    order, starts, exponents = _groups(exponent)
    m = magnitude[order]
    mask = (1 << 18) - 1
    a, b, c = m >> 36, (m >> 18) & mask, m & mask
    terms = [
        (a * a, 72),
        (2 * a * b, 54),
        (2 * a * c + b * b, 36),
        (2 * b * c, 18),
        (c * c, 0),
    ]
    sums = [(np.add.reduceat(t, starts).tolist(), shift) for t, shift in terms]
    out = Fraction(0)
    for i, e in enumerate(exponents.tolist()):
        square = sum(values[i] << shift for values, shift in sums)
        out += _scaled(square, 2 * (e - 53))
    return out


class ExactMoment:
    """An aggregate for :func:`~ray_operators.jobs.preprocess.aggregate_globally` (the four steps
    of Ray's ``AggregateFn``: ``init``, ``accumulate_block``, ``merge``, ``finalize``): the exact
    ``mean`` or population ``std`` of a column, named ``mean(<column>)`` / ``std(<column>)`` as
    Ray's ``Mean``/``Std`` (what ``StandardScaler`` stores); nulls are skipped."""

    def __init__(self, column: str, which: str) -> None:
        if which not in ("mean", "std"):
            raise ValueError(f"ExactMoment computes 'mean' or 'std', not {which!r}")
        self.column, self.which = column, which
        self.name = f"{which}({column})"

    def init(self, _key: Any) -> Moments:
        return Moments()

    def accumulate_block(self, accumulator: Moments, block: Any) -> Moments:
        import pyarrow as pa

        column = block.column(self.column).drop_null().cast(pa.float64())
        return accumulator + moments(column.to_numpy())

    def merge(self, a: Moments, b: Moments) -> Moments:
        return a + b

    def finalize(self, accumulator: Moments) -> float | None:
        return accumulator.mean() if self.which == "mean" else accumulator.std()
