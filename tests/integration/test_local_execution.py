"""A stage's work on a small input runs in the job's driver (``LocalDataset``) on Ray Data's own
semantics: the same transforms give the same rows and schema as through Ray Data, batch sizes,
batch formats, callable classes and generators included; the fit's aggregates, the training
split, the torch batches and the training workers' equal shards agree with Ray's."""

from __future__ import annotations

import math
import time

import pytest

from ray_operators.contract.result import parse_result
from tests.helpers.ray_helpers import run_job

pytestmark = pytest.mark.integration


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_local_dataset_matches_ray_data(ray_head, hook):
    found = parse_result(
        run_job(hook, "python local_dataset.py", f"local-dataset-{time.time_ns()}", timeout=240)
    )
    rows = found["rows"]
    assert len(rows["ray"]) == 40 and found["count"] == {"ray": 40, "local": 40}
    assert _same(rows["local"], rows["ray"])
    # The pandas step saw batches of 7 rows (the last of each block shorter) on both.
    assert sorted({r["n"] for r in rows["local"]}) == sorted({r["n"] for r in rows["ray"]}) == [2, 3, 7]
    assert {r["label"] for r in rows["local"]} == {"t"}
    assert found["schema"]["local"] == found["schema"]["ray"]
    assert _same(found["aggregate"]["local"], found["aggregate"]["ray"])
    assert found["split"]["local"] == found["split"]["ray"]
    assert found["split"]["local"][1] == list(range(30, 40))
    assert found["lazy"] is True
    # Training ingest: the same tensors in the same batches; each worker's equal shard alike.
    assert found["torch"]["local"] == found["torch"]["ray"]
    assert [len(b["a"][1]) for b in found["torch"]["local"]] == [16, 16, 5]
    assert found["shards"]["local"] == found["shards"]["ray"] == [12, 12, 12]
