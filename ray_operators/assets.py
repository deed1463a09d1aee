"""Iceberg tables as Airflow Assets: stable URIs, optional snapshot watchers, lineage in the UI.

The ``iceberg`` URI scheme (registered in the provider's ``asset-uris``):
``iceberg://<catalog>/<namespace>/<table>``. ``<catalog>`` is the catalog's name, which is the
``iceberg`` connection's id: Airflow's Iceberg provider loads each connection's catalog under its
id (``load_catalog(conn_id, ...)``), and a SqlCatalog keys its tables by that name. A nested
namespace stays dotted (``iceberg://lake/a.b/t``). Airflow validates and normalizes such URIs with
:func:`sanitize_uri`, and OpenLineage names the table by its physical location with a ``TABLE``
symlink under the catalog's URI (:func:`convert_asset_to_openlineage`), which does not depend on
the connection's id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetWatcher

from ray_operators.iceberg_snapshots import parse_table_name

if TYPE_CHECKING:
    from urllib.parse import SplitResult

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


# ---- the ``iceberg`` URI scheme (provider info ``asset-uris``) -------------------------------


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's normalizer for ``iceberg`` asset URIs: ``iceberg://<catalog>/<namespace>/<table>``
    with a catalog and exactly a namespace and a table; anything else is a clear error where the
    asset is declared. The scheme is lower-cased and a trailing ``/`` dropped by Airflow;
    identifiers keep their case (catalogs may be case-sensitive)."""
    parts = [p for p in uri.path.split("/") if p]
    if not uri.netloc or len(parts) != 2 or uri.query:
        raise ValueError(
            f"Iceberg asset URI {uri.geturl()!r} must be iceberg://<catalog>/<namespace>/<table> "
            "(the catalog is the iceberg connection's id; a nested namespace stays dotted: a.b)"
        )
    return uri._replace(path="/" + "/".join(parts))


def create_asset(
    *, table: str, iceberg_conn_id: str = "iceberg_default", extra: dict[str, Any] | None = None
) -> Asset:
    """The asset factory Airflow registers for the scheme: :func:`iceberg_asset` without a watcher."""
    return iceberg_asset(table, iceberg_conn_id=iceberg_conn_id, extra=extra)


def parse_asset_uri(uri: str) -> tuple[str, str]:
    """``(catalog, "namespace.table")`` of an ``iceberg://`` asset URI."""
    from urllib.parse import urlsplit

    parts = sanitize_uri(urlsplit(uri))
    namespace, table = parts.path.strip("/").split("/")
    return parts.netloc, f"{namespace}.{table}"


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Any:
    """The OpenLineage dataset of an ``iceberg://`` asset (OpenLineage's ``asset-uris`` converter):
    named by the table's physical location, with a ``TABLE`` symlink under its catalog's URI (see
    :mod:`ray_operators.lineage.naming`), read through the asset's connection. Where the catalog
    cannot be reached, the symlink's naming alone (``iceberg://<catalog>``, ``namespace.table``)."""
    from openlineage.client.event_v2 import Dataset

    catalog_name, table = parse_asset_uri(asset.uri)
    conn_id = str((asset.extra or {}).get("iceberg_conn_id") or catalog_name)
    try:
        from ray_operators.iceberg_catalog import build_catalog
        from ray_operators.lineage.openlineage import iceberg_dataset

        dataset = iceberg_dataset(build_catalog(conn_id), table)
        return Dataset(namespace=dataset.namespace, name=dataset.name, facets=dataset.facets)
    except Exception:  # lineage never fails a task
        return Dataset(namespace=f"{SCHEME}://{catalog_name}", name=table)
