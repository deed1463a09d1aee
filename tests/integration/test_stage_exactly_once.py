"""A stage job stopped mid-run leaves no commit; its retry writes once; a replay writes nothing."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ray_operators.contract.result import parse_result
from ray_operators.contract.spec import StageSpec
from ray_operators.jobs.examples import SLOW_DATA_FILE_SECONDS
from ray_operators.jobs.write import find_committed
from tests.conftest import wait_for
from tests.helpers.iceberg_helpers import catalog_properties

pytestmark = pytest.mark.integration


def _run(hook, spec: StageSpec, submission_id: str) -> None:
    hook.submit_job(
        entrypoint=f"python -m ray_operators.jobs.run_stage --spec {spec.encode()}",
        submission_id=submission_id,
    )


def _status(hook, submission_id: str) -> str:
    return hook.get_job_info(submission_id)["status"]


def test_stopped_job_leaves_no_commit_and_the_retry_writes_exactly_once(airflow_db, ray_head, hook, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("db")
    source = iceberg.catalog.create_table(
        "db.source", schema=pa.schema([("id", pa.int64()), ("v", pa.float64())])
    )
    # Ten data files of 40 rows: ten blocks, so the stage writes ten data files. The stage
    # materializes its transforms before it writes, and writing ten small files takes a fraction
    # of a second: a stop "after the first file" could come after the commit. So the job's
    # storage is slow (SlowDataFileIO, a real pyarrow FileIO that waits 1.5 s before each data
    # file, as storage under load does): the write lasts about 15 s, and a stop after its first
    # file lands inside it.
    with source.transaction() as tx:
        for start in range(0, 400, 40):
            ids = list(range(start, start + 40))
            tx.append(pa.table({"id": ids, "v": [float(i) for i in ids]}, schema=source.schema().as_arrow()))
    spec = StageSpec.from_json(
        {
            "stage": "preprocess",
            "catalog_name": iceberg.conn_id,
            "catalog_properties": {
                **catalog_properties(iceberg.root),
                "py-io-impl": "ray_operators.jobs.examples.SlowDataFileIO",
                SLOW_DATA_FILE_SECONDS: "1.5",
            },
            "output_table": "db.target",
            "inputs": [{"table": "db.source", "snapshot_id": source.metadata.current_snapshot_id}],
            "run": {"run_key": "exactly-once-test/run=1", "dag_id": "t", "run_id": "r", "task_id": "p"},
            "params": {
                "transforms": [
                    {
                        "fn": "ray_operators.jobs.examples:slow_identity",
                        "batch_size": 40,
                        "kwargs": {"seconds": 0.1},
                        "batch_format": "pandas",
                    }
                ]
            },
        }
    )

    _run(hook, spec, "eo-a1")
    # Stop the job inside its write: its write tasks have written a data file or two, and the
    # rest are still waiting on the slow storage; nothing is committed yet.
    wait_for(
        lambda: sorted(iceberg.root.glob("warehouse/**/target/data/**/*.parquet")),
        120,
        interval=0.1,
        what="the job's write to write its first data file",
    )
    hook.stop_job("eo-a1")
    wait_for(lambda: _status(hook, "eo-a1") == "STOPPED", 30, what="the job to stop")
    # What the stopped try left on disk (the table has no other writer yet).
    left = {str(f) for f in iceberg.root.glob("warehouse/**/target/data/**/*.parquet")}
    catalog = iceberg.catalog
    # No commit: the commit is the driver's, after every file. (That the write was not over when
    # the stop came is checked against the retry's file count.)
    assert (
        not catalog.table_exists("db.target")
        or find_committed(catalog.load_table("db.target"), spec.run_key) is None
    ), "a stopped job committed"
    assert "stage preprocess result:" not in hook.get_job_logs("eo-a1")

    _run(hook, spec, "eo-a2")
    wait_for(lambda: _status(hook, "eo-a2") in ("SUCCEEDED", "FAILED"), 300, interval=1, what="the retry")
    assert _status(hook, "eo-a2") == "SUCCEEDED", hook.get_job_logs("eo-a2")[-2000:]
    written = parse_result(hook.get_job_logs("eo-a2"))["output"]
    assert written["skipped"] is False and written["rows"] == 400, written
    target = catalog.load_table("db.target")
    assert target.scan().to_arrow().num_rows == 400
    assert sorted(target.scan().to_arrow()["id"].to_pylist()) == list(range(400))
    snapshots = len(target.metadata.snapshots)
    # The stop came inside the write: the stopped try left some of its files, fewer than a whole
    # write commits (its write was cut short). And none of them is in the commit: the retry wrote
    # and committed its own.
    committed = {task.file.file_path.removeprefix("file://") for task in target.scan().plan_files()}
    on_disk = {str(f) for f in iceberg.root.glob("warehouse/**/target/data/**/*.parquet")}
    assert committed <= on_disk  # the same paths, compared as the same strings
    assert 1 <= len(left) < len(committed), (len(left), len(committed))
    assert not left & committed

    _run(hook, spec, "eo-a3")  # a replay of the same run (cleared task, re-run backfill)
    wait_for(lambda: _status(hook, "eo-a3") in ("SUCCEEDED", "FAILED"), 300, interval=1, what="the replay")
    # The replay itself succeeded and said it skipped, pointing at the retry's commit: a replay
    # that crashed would also have written nothing.
    assert _status(hook, "eo-a3") == "SUCCEEDED", hook.get_job_logs("eo-a3")[-2000:]
    replayed = parse_result(hook.get_job_logs("eo-a3"))["output"]
    assert replayed["skipped"] is True, replayed
    assert replayed["snapshot_id"] == written["snapshot_id"]
    target = catalog.load_table("db.target")
    assert target.scan().to_arrow().num_rows == 400
    assert len(target.metadata.snapshots) == snapshots
