"""Exactly-once against a concurrent writer: the run-key check and the commit share one base snapshot."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ray_operators.contract.result import parse_result
from ray_operators.contract.spec import StageSpec
from tests.helpers.iceberg_helpers import catalog_properties
from tests.helpers.ray_helpers import run_job

pytestmark = pytest.mark.integration
JOB = "race_commit.py"


def _race(hook, iceberg, tmp_path, which: str, table: str) -> tuple[dict, str]:
    iceberg.catalog.create_namespace_if_not_exists("race")
    iceberg.catalog.create_table(table, schema=pa.schema([("id", pa.int64())]))
    spec = StageSpec.from_json(
        {
            "stage": "preprocess",
            "catalog_name": iceberg.conn_id,
            "catalog_properties": catalog_properties(iceberg.root),
            "output_table": table,
            "run": {"run_key": f"race/{which}/run=1", "dag_id": "t", "run_id": "r", "task_id": "w"},
        }
    )
    marker = tmp_path / which
    marker.mkdir()
    logs = run_job(hook, f"python {JOB} {spec.encode()} {which} {marker}", f"race-{which}", timeout=240)
    assert (marker / "committed").exists(), "the concurrent writer never ran"
    return parse_result(logs), logs


def test_same_run_key_committed_during_the_write_is_not_duplicated(
    airflow_db, ray_head, hook, iceberg, tmp_path
):
    out, logs = _race(hook, iceberg, tmp_path, "same", "race.same")
    # The other try landed inside our write's window: our commit failed on its moved base, and the
    # retry's re-check found the run key (not the first check, before the write, which found none).
    assert "race.same: commit conflict: a concurrent writer committed run key race/same/run=1" in logs
    assert "attempt 2" not in logs
    # The other try's rows won; ours were never committed.
    assert out["ids"] == [-3, -2, -1]
    assert out["snapshots_with_key"] == 1
    assert out["branch_run_keys"] == ["race/same/run=1"]
    assert out["result"]["skipped"] is True


def test_unrelated_concurrent_commit_is_kept_and_ours_lands_once(
    airflow_db, ray_head, hook, iceberg, tmp_path
):
    out, logs = _race(hook, iceberg, tmp_path, "other", "race.other")
    # The conflict path ran: our first commit failed on its moved base and the write went again.
    assert "race.other: commit conflict with a concurrent writer, attempt 2" in logs
    assert "attempt 3" not in logs
    # The other writer committed inside our write (after its run-key check, before its commit):
    # its snapshot is on the branch, before ours, and nothing of either was lost.
    assert out["branch_run_keys"] == ["someone-else/run=1", "race/other/run=1"]
    assert out["ids"] == [-3, -2, -1, *range(50)]
    assert out["snapshots_with_key"] == 1
    assert out["result"]["skipped"] is False and out["result"]["rows"] == 50
