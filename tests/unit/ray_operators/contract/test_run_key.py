"""The run key rule (ray_operators.contract.run_key)."""

from __future__ import annotations

from datetime import UTC, datetime

from ray_operators.contract.run_key import derived, run_key, snapshots_identity

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def key(**kwargs):
    return run_key(dag_id="d", task_id="t", run_id="manual__1", **kwargs)


def test_run_key_rule_in_order():
    # Input snapshots first: a sensor's, a stage's, events' or a UI trigger's.
    assert key(input_identity="snapshots=5+7", interval=(START, END)) == "d/t/snapshots=5+7"
    # Curation is keyed by run, whatever the interval.
    assert key(stage="curate", interval=(START, END)) == "d/t/run=manual__1"
    assert key(interval=(START, END)) == f"d/t/interval={START.isoformat()}/{END.isoformat()}"
    assert key(partition_key="eu") == "d/t/partition=eu"
    assert key(pinned_snapshot_ids=[3, 1]) == "d/t/snapshots=3,1"
    assert key() == "d/t/run=manual__1"
    assert derived("d/t/run=1", "quarantine") == "d/t/run=1/quarantine"


def test_snapshot_identity_does_not_depend_on_order():
    assert snapshots_identity([7, 5]) == snapshots_identity([5, 7]) == "snapshots=5+7"
    assert snapshots_identity(range_=(1, 9)) == "snapshots=1..9"
