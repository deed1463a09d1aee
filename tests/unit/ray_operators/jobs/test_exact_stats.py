"""Exact means and standard deviations: the exact values, rounded once, for any split into blocks."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

from ray_operators.jobs.exact_stats import ExactMoment, Moments, moments

RNG = np.random.default_rng(7)
CASES = {
    "normal": RNG.normal(size=5000),
    "large offset": 1e9 + RNG.uniform(size=3000),  # cancellation in a naive sum of squares
    "wide range": np.concatenate([RNG.normal(size=300) * 1e-300, RNG.normal(size=300) * 1e300]),
    "signed zeros and a subnormal": np.array([0.0, -0.0, 5e-324, -1.5, 2.25]),
    "constant": np.full(17, 3.25),
}


def _exact(values):
    xs = [Fraction(v) for v in values.tolist()]
    return sum(xs, Fraction(0)), sum((x * x for x in xs), Fraction(0))


@pytest.mark.parametrize("name", CASES)
def test_sums_are_exact_and_any_split_gives_the_same_bits(name):
    values = CASES[name]
    whole = moments(values)
    assert (whole.total, whole.squares) == _exact(values)
    mean = sum(Fraction(v) for v in values.tolist()) / len(values)
    assert whole.mean() == float(mean)  # the exact mean, rounded once
    for blocks in (2, 7, 64):
        split = sum((moments(part) for part in np.array_split(RNG.permutation(values), blocks)), Moments())
        assert (split.mean(), split.std()) == (whole.mean(), whole.std()), blocks


def test_std_is_the_population_std_and_survives_the_float_range():
    values = CASES["normal"]
    assert moments(values).std() == pytest.approx(float(np.std(values)), rel=1e-13)
    assert moments(CASES["constant"]).std() == 0.0
    wide = moments(CASES["wide range"]).std()
    assert math.isfinite(wide) and wide == pytest.approx(float(np.std(CASES["wide range"] / 1e300)) * 1e300)


def test_nan_or_infinity_gives_nan_and_no_values_give_none():
    assert math.isnan(moments(np.array([1.0, math.nan])).mean())
    assert math.isnan((moments(np.array([1.0])) + moments(np.array([math.inf]))).std())
    assert Moments().mean() is None and moments(np.array([])).std() is None


def test_exact_moment_as_an_aggregate_skips_nulls_and_takes_integers():
    blocks = [
        pa.table({"x": [1, None, 4]}),
        pa.table({"x": pa.array([None, None], pa.int64())}),
        pa.table({"x": [10]}),
    ]
    for which, expected in (("mean", 5.0), ("std", float(np.std([1, 4, 10])))):
        agg = ExactMoment("x", which)
        acc = agg.init(None)
        for block in blocks:
            acc = agg.merge(acc, agg.accumulate_block(agg.init(None), block))
        assert agg.name == f"{which}(x)" and agg.finalize(acc) == pytest.approx(expected, rel=1e-15)
    with pytest.raises(ValueError, match="'mean' or 'std'"):
        ExactMoment("x", "median")
