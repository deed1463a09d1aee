"""Bench job: the write of a tiny stage, with and without a ``schema()`` peek before it.

usage: python tiny_write.py SPEC_B64 REPS
Each repetition builds the same lazy dataset (the pinned read plus a user transform) and commits
it with ``commit_exactly_once`` under a fresh run key; the "peek" variant first calls
``ds.schema()``, which is what the write path did before it computed the data only once.
"""

import sys
import time

from ray_operators.contract.result import report_result
from ray_operators.contract.spec import StageSpec
from ray_operators.jobs.read import read_pinned
from ray_operators.jobs.write import commit_exactly_once

spec = StageSpec.decode(sys.argv[1])
reps = int(sys.argv[2])


def plus_one(batch):
    batch["x"] = batch["x"] + 1.0
    return batch


times = {"peek": [], "no_peek": []}
for rep in range(reps + 1):  # the first round warms up workers and is dropped
    for variant in ("no_peek", "peek"):
        run = spec.with_run_key(f"bench/{variant}/{rep}")
        started = time.perf_counter()
        ds, _ = read_pinned(run, run.inputs[0])
        ds = ds.map_batches(plus_one, batch_format="pandas")
        if variant == "peek":
            ds.schema()
        result = commit_exactly_once(run, ds)
        assert result["rows"] == 100 and not result["skipped"], result
        if rep:
            times[variant].append(time.perf_counter() - started)
report_result(times)
