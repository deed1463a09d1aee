"""What the lineage views read: the tables of every ``iceberg`` connection, and the Ray job pages
the stage tasks recorded.

Runs in Airflow's API server, in FastAPI's worker threads (every call here blocks: catalogs, the
metadata database). pyiceberg loads inside the functions.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ray_operators.lineage.records import SnapshotRecord, table_records

#: ``[ray_lakehouse] lineage_iceberg_conn_ids``: the connections whose catalogs the lineage views
#: read (comma-separated). Unset: every connection of type ``iceberg``, from the environment
#: (``AIRFLOW_CONN_*``) and from Airflow's metadata database.
CONN_IDS_OPTION = ("ray_lakehouse", "lineage_iceberg_conn_ids")
CONN_TYPE = "iceberg"


@dataclass
class CatalogLineage:
    """Every table's snapshots in the catalogs read, and one line per catalog that failed."""

    records: list[SnapshotRecord] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def tables(self) -> dict[tuple[str, str], list[SnapshotRecord]]:
        out: dict[tuple[str, str], list[SnapshotRecord]] = {}
        for record in self.records:
            out.setdefault((record.catalog, record.table), []).append(record)
        return dict(sorted(out.items()))


def _env_conn_type(value: str) -> str | None:
    value = value.strip()
    if value.startswith("{"):
        try:
            return str(json.loads(value).get("conn_type") or "") or None
        except (ValueError, AttributeError):
            return None
    return value.partition("://")[0].replace("-", "_") or None


def iceberg_conn_ids() -> list[str]:
    """The connections the lineage views read (see :data:`CONN_IDS_OPTION`)."""
    from airflow.sdk.configuration import conf

    configured = conf.get(*CONN_IDS_OPTION, fallback="") or ""
    if configured.strip():
        return [c.strip() for c in configured.split(",") if c.strip()]
    found = {
        name.removeprefix("AIRFLOW_CONN_").lower()
        for name, value in os.environ.items()
        if name.startswith("AIRFLOW_CONN_") and _env_conn_type(value) == CONN_TYPE
    }
    try:
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            found.update(session.scalars(select(Connection.conn_id).where(Connection.conn_type == CONN_TYPE)))
    except Exception:  # no metadata database here: the environment's connections only
        pass
    return sorted(found)


#: Seconds a catalog object is reused between page loads (opening one builds an engine and, for a
#: SQL catalog, checks its tables); a changed connection is picked up after this.
CATALOG_TTL_S = 60.0
_catalogs: dict[str, tuple[float, Any]] = {}
_catalogs_lock = threading.Lock()


def _catalog(conn_id: str) -> Any:
    from ray_operators.iceberg_catalog import build_catalog

    now = time.monotonic()
    with _catalogs_lock:
        cached = _catalogs.get(conn_id)
        if cached is not None and now - cached[0] < CATALOG_TTL_S:
            return cached[1]
    catalog = build_catalog(conn_id)
    with _catalogs_lock:
        _catalogs[conn_id] = (now, catalog)
    return catalog


def read_catalog(conn_id: str) -> list[SnapshotRecord]:
    """Every snapshot of every table in the connection's catalog."""
    catalog = _catalog(conn_id)
    records: list[SnapshotRecord] = []
    pending = [tuple(ns) for ns in catalog.list_namespaces()]
    while pending:
        namespace = pending.pop()
        for identifier in catalog.list_tables(namespace):
            name = ".".join(identifier)
            records += table_records(conn_id, name, catalog.load_table(name).metadata)
        try:
            pending += [tuple(ns) for ns in catalog.list_namespaces(namespace) if tuple(ns) != namespace]
        except Exception:  # catalogs without nested namespaces
            pass
    return records


def read_catalogs(conn_ids: Iterable[str] | None = None) -> CatalogLineage:
    """All catalogs' records; a catalog that cannot be read is reported, never fatal (its error
    names the connection and the error type, never its settings)."""
    out = CatalogLineage()
    for conn_id in iceberg_conn_ids() if conn_ids is None else conn_ids:
        try:
            out.records += read_catalog(conn_id)
        except Exception as err:
            out.errors[conn_id] = f"{type(err).__name__}: cannot read the catalog of connection {conn_id!r}"
    return out


def with_job_urls(records: list[SnapshotRecord]) -> list[SnapshotRecord]:
    """The records with the Ray dashboard page each writing task recorded (XCom ``ray_job_url``,
    the same link as the task's "Ray Job" button)."""
    from ray_operators.links.ray import RAY_JOB_URL_XCOM_KEY

    dag_ids = {r.dag_id for r in records if r.dag_id and r.submission_id}
    if not dag_ids:
        return records
    urls: dict[tuple[str, str, str], str] = {}
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.value).where(
                    XComModel.key == RAY_JOB_URL_XCOM_KEY, XComModel.dag_id.in_(dag_ids)
                )
            )
            for dag_id, run_id, task_id, value in rows:
                url = XComModel.deserialize_value(_Row(value))
                if isinstance(url, str) and url.startswith(("http://", "https://")):
                    urls[(dag_id, run_id, task_id)] = url
    except Exception:  # no metadata database: no links
        return records
    return [
        replace(r, ray_job_url=urls.get((r.dag_id or "", r.run_id or "", r.task_id or "")))
        if r.submission_id
        else r
        for r in records
    ]


@dataclass
class _Row:
    """What ``XComModel.deserialize_value`` reads: an object with ``value``."""

    value: Any
