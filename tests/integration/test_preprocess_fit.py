"""The preprocess fit aggregates without a shuffle (``aggregate_globally``): the same numbers as
Ray's ``Dataset.aggregate`` with the same aggregates, over blocks with nulls, an all-null block
and an empty one, on a real Ray head."""

from __future__ import annotations

import time

import pytest

from ray_operators.contract.result import parse_result
from tests.helpers.ray_helpers import run_job

pytestmark = pytest.mark.integration


def test_shuffle_free_fit_aggregates_equal_rays_aggregate(ray_head, hook):
    logs = run_job(hook, "python global_aggregate.py", f"global-aggregate-{time.time_ns()}", timeout=240)
    found = parse_result(logs)
    assert found["blocks"] == 4
    ours, rays = found["ours"], found["rays"]
    assert (
        set(ours)
        == set(rays)
        == {"mean(x)", "std(x)", "min(n)", "max(n)", "mean(n)", "std(n)", "count.x", "unique.color"}
    )
    for name in ("mean(x)", "std(x)", "mean(n)", "std(n)"):
        assert ours[name] == pytest.approx(rays[name], rel=1e-12), name
    assert (ours["min(n)"], ours["max(n)"], ours["count.x"]) == (
        rays["min(n)"],
        rays["max(n)"],
        rays["count.x"],
    )
    assert (ours["min(n)"], ours["max(n)"], ours["count.x"]) == (-7, 10, 6)
    assert ours["unique.color"] == rays["unique.color"]
    assert set(ours["unique.color"]) == {"red", "blue", "green", "", None}
