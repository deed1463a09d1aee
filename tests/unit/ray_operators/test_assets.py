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


# ---- the iceberg URI scheme (provider info asset-uris) --------------------------------------


def test_the_provider_registers_the_iceberg_scheme_with_airflow():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    from ray_operators.assets import convert_asset_to_openlineage, create_asset, sanitize_uri

    assert manager.asset_uri_handlers["iceberg"] is sanitize_uri
    assert manager.asset_factories["iceberg"] is create_asset
    assert manager.asset_to_openlineage_converters["iceberg"] is convert_asset_to_openlineage


@pytest.mark.parametrize(
    "uri",
    [
        "iceberg:///db/events",  # no catalog
        "iceberg://lake/events",  # no namespace
        "iceberg://lake/a/b/events",  # a nested namespace must stay dotted
        "iceberg://lake/db/events?x=1",
    ],
)
def test_a_malformed_iceberg_uri_is_refused_where_the_asset_is_declared(uri):
    from airflow.sdk import Asset

    with pytest.raises(ValueError, match=r"iceberg://<catalog>/<namespace>/<table>"):
        Asset(uri=uri)


def test_iceberg_uris_normalize_to_one_form_and_keep_identifier_case():
    from airflow.sdk import Asset

    assert Asset(uri="ICEBERG://lake/db/Events/").uri == "iceberg://lake/db/Events"
    assert Asset(uri="iceberg://lake/a.b/t").uri == "iceberg://lake/a.b/t"
    assert iceberg_asset("db.Events", iceberg_conn_id="lake").uri == "iceberg://lake/db/Events"


def test_the_factory_builds_the_same_asset_as_iceberg_asset():
    from ray_operators.assets import create_asset, parse_asset_uri

    made = create_asset(table="db.events", iceberg_conn_id="lake")
    assert (made.uri, made.extra["iceberg_conn_id"]) == ("iceberg://lake/db/events", "lake")
    assert parse_asset_uri(made.uri) == ("lake", "db.events")
    assert parse_asset_uri("iceberg://lake/a.b/t") == ("lake", "a.b.t")


def test_an_unreachable_catalog_still_converts_to_the_catalog_naming(monkeypatch):
    from ray_operators.assets import convert_asset_to_openlineage

    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    dataset = convert_asset_to_openlineage(iceberg_asset("db.events", iceberg_conn_id="nowhere"), None)
    assert (dataset.namespace, dataset.name) == ("iceberg://nowhere", "db.events")
