"""A stage job stopped mid-run leaves no commit; its retry writes once; a replay writes nothing."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ray_operators.contract.result import parse_result
from ray_operators.contract.spec import StageSpec
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
    # Ten data files of 40 rows: ten blocks, each transformed (2 s) and written as it comes, so the
    # write goes on for several seconds after its first file and the job can be stopped inside it.
    # (One file would be one block: its file written, then the commit at once.)
    with source.transaction() as tx:
        for start in range(0, 400, 40):
            ids = list(range(start, start + 40))
            tx.append(pa.table({"id": ids, "v": [float(i) for i in ids]}, schema=source.schema().as_arrow()))
    spec = StageSpec.from_json(
        {
            "stage": "preprocess",
            "catalog_name": iceberg.conn_id,
            "catalog_properties": catalog_properties(iceberg.root),
            "output_table": "db.target",
            "inputs": [{"table": "db.source", "snapshot_id": source.metadata.current_snapshot_id}],
            "run": {"run_key": "exactly-once-test/run=1", "dag_id": "t", "run_id": "r", "task_id": "p"},
            "params": {
                "transforms": [
                    {
                        "fn": "ray_operators.jobs.examples:slow_identity",
                        "batch_size": 20,
                        "kwargs": {"seconds": 1.0},
                        "batch_format": "pandas",
                    }
                ]
            },
        }
    )

    _run(hook, spec, "eo-a1")
    # Stop the job inside its write: its write tasks have written data files (each batch's file
    # is written as it comes), and nothing is committed yet.
    data_files = wait_for(
        lambda: sorted(iceberg.root.glob("warehouse/**/target/data/**/*.parquet")),
        120,
        interval=0.1,
        what="the job's write to write its first data file",
    )
    hook.stop_job("eo-a1")
    wait_for(lambda: _status(hook, "eo-a1") == "STOPPED", 30, what="the job to stop")
    catalog = iceberg.catalog
    # Stopped inside the write: data files on disk (tasks already running may add more while the
    # job stops), and no commit: the commit is the driver's, after every file.
    assert data_files
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
