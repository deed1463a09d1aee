"""Iceberg tables as Airflow Assets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ray_operators.assets import iceberg_asset, iceberg_asset_uri, snapshot_ids_from_events
from ray_operators.triggers.iceberg import IcebergSnapshotTrigger


def test_asset_uri_is_stable_and_readable():
    assert iceberg_asset_uri("db.events", "lake") == "iceberg://lake/db/events"
    assert iceberg_asset_uri("a.b.events", "lake") == "iceberg://lake/a.b/events"
    with pytest.raises(ValueError, match="namespace.table"):
        iceberg_asset_uri("events")


def test_plain_asset_has_no_watcher_and_watched_asset_runs_our_trigger():
    plain = iceberg_asset("db.events", iceberg_conn_id="lake")
    assert plain.uri == "iceberg://lake/db/events" and plain.watchers == []
    assert plain.extra["table"] == "db.events"
    watched = iceberg_asset(
        "db.events",
        iceberg_conn_id="lake",
        watch=True,
        poll_interval=5,
        ignore_summary={"airflow_dag_id": "me"},
    )
    (watcher,) = watched.watchers
    assert isinstance(watcher.trigger, IcebergSnapshotTrigger)
    kwargs = watcher.trigger.serialize()[1]
    assert kwargs["poll_interval"] == 5.0 and kwargs["ignore_summary"] == {"airflow_dag_id": "me"}
    assert (watched.name, watched.uri) == (plain.name, plain.uri)  # same identity with or without a watcher


def test_snapshot_ids_from_several_events_in_order_without_duplicates():
    def event(*ids):
        return SimpleNamespace(extra={"from_trigger": True, "payload": {"snapshot_ids": list(ids)}})

    events = {
        "iceberg://lake/db/events": [event(1, 2), event(3), event(3)],
        "other": [SimpleNamespace(extra={})],
    }
    assert snapshot_ids_from_events(events) == [1, 2, 3]
    assert snapshot_ids_from_events(None) == []
