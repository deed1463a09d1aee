"""Model registration: the version is assigned at the registry commit, on the commit's base.

A real SqlCatalog, no Ray: the race is staged deterministically, with the concurrent run's
registration made inside our run's build (after it read the registry, before it committed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import pytest

from ray_operators.contract.lineage import MODEL, RUN_KEY
from ray_operators.contract.spec import StageSpec
from ray_operators.iceberg_snapshots import ancestors
from ray_operators.jobs.train import _next_version_row, artifact_dir, registry_schema
from ray_operators.jobs.write import commit_rows_exactly_once, ensure_table
from tests.helpers.iceberg_helpers import catalog_properties

pytestmark = pytest.mark.integration


def _spec(iceberg, run_key: str) -> StageSpec:
    return StageSpec(
        stage="train",
        catalog_name=iceberg.conn_id,
        catalog_properties=catalog_properties(iceberg.root),
        output_table="ml.registry",
        run={"run_key": run_key, "dag_id": "d", "run_id": run_key, "task_id": "train"},
    )


def _row(run_key: str) -> dict:
    return {
        "model_name": "clf",
        "artifact_uri": artifact_dir("file:///models", "clf", run_key) + "/model.pt",
        "metrics": "{}",
        "input_table": "ml.features",
        "input_snapshot_id": 1,
        "feature_columns": "[]",
        "label_column": "label",
        "num_classes": 2,
        "hidden": 4,
        "used_gpu": False,
        "run_key": run_key,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def test_two_concurrent_training_runs_get_two_versions_and_one_row_each(iceberg):
    backfill, scheduled = _spec(iceberg, "d/train/interval=A"), _spec(iceberg, "d/train/interval=B")
    ensure_table(backfill, "ml.registry", registry_schema())
    raced = []

    def build_with_a_concurrent_registration(table):
        rows, props = _next_version_row(table, row=_row(backfill.run_key))
        if not raced:  # the scheduled run registers after we numbered our row, before we commit
            raced.append(
                commit_rows_exactly_once(scheduled, partial(_next_version_row, row=_row(scheduled.run_key)))
            )
        return rows, props

    result, rows = commit_rows_exactly_once(backfill, build_with_a_concurrent_registration)
    # Our first numbering (1) collided with the scheduled run's: the commit failed on its base and
    # was numbered again on the new head.
    ((scheduled_result, scheduled_rows),) = raced
    assert scheduled_rows[0]["model_version"] == 1 and rows[0]["model_version"] == 2
    assert result["skipped"] is False and scheduled_result["skipped"] is False

    registry = iceberg.catalog.load_table("ml.registry")
    table = sorted(registry.scan().to_arrow().to_pylist(), key=lambda r: r["model_version"])
    assert [(r["run_key"], r["model_version"]) for r in table] == [
        (scheduled.run_key, 1),
        (backfill.run_key, 2),
    ]
    # Two artifacts: one directory per run key.
    assert len({r["artifact_uri"] for r in table}) == 2
    assert [s.summary[MODEL] for s in reversed(ancestors(registry.metadata))] == ["clf:1", "clf:2"]

    # A retry of the backfill's run registers nothing and reports its version.
    again, again_rows = commit_rows_exactly_once(
        backfill, partial(_next_version_row, row=_row(backfill.run_key))
    )
    assert again["skipped"] is True and again["snapshot_id"] == result["snapshot_id"]
    assert again_rows[0]["model_version"] == 2
    assert len(iceberg.catalog.load_table("ml.registry").scan().to_arrow()) == 2


def test_a_rolled_back_registration_is_registered_again(iceberg):
    spec = _spec(iceberg, "d/train/interval=A")
    ensure_table(spec, "ml.registry", registry_schema())
    first, _ = commit_rows_exactly_once(spec, partial(_next_version_row, row=_row(spec.run_key)))
    registry = iceberg.catalog.load_table("ml.registry")
    parent = registry.metadata.snapshot_by_id(first["snapshot_id"]).parent_snapshot_id
    # The registry's only commit is ours: roll back to the empty table (no snapshot) is not
    # possible, so register something else first and roll back to it.
    assert parent is None
    other, _ = commit_rows_exactly_once(
        _spec(iceberg, "other"), partial(_next_version_row, row=_row("other"))
    )
    registry = iceberg.catalog.load_table("ml.registry")
    registry.manage_snapshots().rollback_to_snapshot(first["snapshot_id"]).commit()
    # "other" is off the branch now: its run key no longer counts as registered.
    again, rows = commit_rows_exactly_once(
        _spec(iceberg, "other"), partial(_next_version_row, row=_row("other"))
    )
    assert again["skipped"] is False and again["snapshot_id"] != other["snapshot_id"]
    assert rows[0]["model_version"] == 2
    head = iceberg.catalog.load_table("ml.registry")
    assert [s.summary[RUN_KEY] for s in reversed(ancestors(head.metadata))] == [spec.run_key, "other"]
