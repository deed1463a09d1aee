"""Iceberg tables as Airflow Assets: stable URIs, optional snapshot watchers, lineage in the UI."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetWatcher

from ray_operators.iceberg_snapshots import parse_table_name

SCHEME = "iceberg"


def iceberg_asset_uri(table: str, iceberg_conn_id: str = "iceberg_default") -> str:
    """``iceberg://<conn_id>/<namespace>/<table>`` (a nested namespace stays dotted: ``a.b``)."""
    namespace, name = parse_table_name(table)
    return f"{SCHEME}://{iceberg_conn_id}/{namespace}/{name}"


def iceberg_asset(
    table: str,
    *,
    iceberg_conn_id: str = "iceberg_default",
    watch: bool = False,
    branch: str = "main",
    poll_interval: float = 30.0,
    extra: dict[str, Any] | None = None,
    **trigger_kwargs: Any,
) -> Asset:
    """An Airflow ``Asset`` for an Iceberg table.

    With ``watch=True`` the asset carries an ``AssetWatcher`` running
    :class:`~ray_operators.triggers.iceberg.IcebergSnapshotTrigger`, so ``DAG(schedule=[asset])``
    runs whenever the table gets qualifying snapshots; the asset event's ``extra["payload"]`` holds
    the snapshot ids (``snapshot_ids``) and details (``snapshots``). Further keyword arguments go
    to the trigger (``operations``, ``ignore_summary``, ``min_added_records``, ``emit_on_start``...).
    """
    uri = iceberg_asset_uri(table, iceberg_conn_id)
    watchers = []
    if watch:
        from ray_operators.triggers.iceberg import IcebergSnapshotTrigger

        watchers.append(
            AssetWatcher(
                name=f"iceberg-snapshots-{iceberg_conn_id}-{table}-{branch}",
                trigger=IcebergSnapshotTrigger(
                    table=table,
                    iceberg_conn_id=iceberg_conn_id,
                    branch=branch,
                    poll_interval=poll_interval,
                    **trigger_kwargs,
                ),
            )
        )
    return Asset(
        name=uri,
        uri=uri,
        group="iceberg",
        extra={"table": table, "iceberg_conn_id": iceberg_conn_id, "branch": branch, **(extra or {})},
        watchers=watchers,
    )


def snapshot_ids_from_events(events: Any) -> list[int]:
    """All snapshot ids in a run's ``triggering_asset_events`` (there may be several events), in order."""
    ids: list[int] = []
    for _asset, asset_events in dict(events or {}).items():
        for event in asset_events:
            payload = (event.extra or {}).get("payload") or {}
            ids.extend(int(sid) for sid in payload.get("snapshot_ids", []))
    return list(dict.fromkeys(ids))
