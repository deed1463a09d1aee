"""Test job: a concurrent writer commits to the output table while this job's write is running.

usage: python race_commit.py SPEC_B64 {same|other} MARKER_DIR

The concurrent commit happens inside the write (a map over the data being written), after the
write's run-key check and before its commit: the window a check-then-write would lose.
``same``: the concurrent writer commits this very run key (another try of the same run);
``other``: it commits another run's rows.
"""

import os
import sys

import pyarrow as pa
import ray

from ray_operators.contract.lineage import RUN_KEY
from ray_operators.contract.result import report_result
from ray_operators.contract.spec import StageSpec
from ray_operators.iceberg_snapshots import ancestors
from ray_operators.jobs.write import commit_exactly_once, find_committed

spec = StageSpec.decode(sys.argv[1])
which = sys.argv[2]
marker = os.path.join(sys.argv[3], "committed")


def commit_concurrently(batch, *, spec_b64, which, marker):
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # once, whatever the task count
    except FileExistsError:
        return batch
    os.close(fd)
    spec = StageSpec.decode(spec_b64)
    table = spec.load_catalog().load_table(spec.output_table)
    key = spec.run_key if which == "same" else "someone-else/run=1"
    rows = pa.table({"id": [-1, -2, -3]}, schema=table.schema().as_arrow())
    table.append(rows, snapshot_properties={RUN_KEY: key})
    return batch


ds = ray.data.range(50).map_batches(
    commit_concurrently,
    fn_kwargs={"spec_b64": sys.argv[1], "which": which, "marker": marker},
    batch_format="pyarrow",
)
result = commit_exactly_once(spec, ds)
table = spec.load_catalog().load_table(spec.output_table)
ids = sorted(table.scan().to_arrow()["id"].to_pylist())
with_key = [s.snapshot_id for s in table.metadata.snapshots if (s.summary or {}).get(RUN_KEY) == spec.run_key]
assert find_committed(table, spec.run_key) is not None
# Which run keys the branch holds, oldest first: the other writer's commit must be among them.
branch = [(s.summary or {}).get(RUN_KEY) for s in reversed(ancestors(table.metadata))]
report_result({"result": result, "ids": ids, "snapshots_with_key": len(with_key), "branch_run_keys": branch})
