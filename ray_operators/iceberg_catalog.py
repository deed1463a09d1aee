"""The catalog an ``iceberg`` connection names, and reading its tables' state for watchers.

We reuse ``IcebergHook`` (``apache-airflow-providers-apache-iceberg``) and its ``iceberg``
connection type; this module adds what watching snapshots needs on top of it: one catalog per
watcher run, cheap change probes, and a clear split between errors worth waiting out and errors
that will not heal. pyiceberg is imported lazily: this module is safe to import at DAG parse time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

#: pyiceberg errors meaning "not there yet": a watcher keeps waiting.
MISSING_ERRORS = ("NoSuchTableError", "NoSuchNamespaceError")
#: Errors that will not heal by waiting: bad credentials, a malformed identifier or catalog config.
PERMANENT_ERRORS = (
    "UnauthorizedError",
    "ForbiddenError",
    "OAuthError",
    "NoSuchIdentifierError",
    "BadRequestError",
    "NotInstalledError",
)


class IcebergWatchError(RuntimeError):
    """A permanent problem with the watched table or its catalog (fail now, with this message)."""


def is_missing(err: BaseException) -> bool:
    return type(err).__name__ in MISSING_ERRORS


def is_permanent(err: BaseException) -> bool:
    return any(cls.__name__ in PERMANENT_ERRORS for cls in type(err).__mro__)


def build_catalog(iceberg_conn_id: str) -> Catalog:
    """The pyiceberg catalog of an ``iceberg`` connection, named after the connection id (as
    ``IcebergHook`` names it, so table identities match on both sides)."""
    from airflow.providers.apache.iceberg.hooks.iceberg import IcebergHook

    try:
        return IcebergHook(iceberg_conn_id).catalog
    except (ValueError, TypeError, KeyError, ImportError) as err:
        # A catalog type, property or connection that is wrong will not heal by waiting.
        raise IcebergWatchError(
            f"Cannot open the Iceberg catalog of connection {iceberg_conn_id!r}: {type(err).__name__}: {err}"
        ) from err
    except Exception as err:
        if is_permanent(err) or type(err).__name__ == "AirflowNotFoundException":
            raise IcebergWatchError(
                f"Cannot open the Iceberg catalog of connection {iceberg_conn_id!r}: {type(err).__name__}: {err}"
            ) from err
        raise


def all_catalog_properties(iceberg_conn_id: str) -> dict[str, str]:
    """Every catalog property of an ``iceberg`` connection, secrets included (for local use only)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(iceberg_conn_id)
    props = {str(k): str(v) for k, v in (conn.extra_dejson or {}).items()}
    if conn.host:
        props["uri"] = conn.host.rstrip("/")
    props.setdefault("type", "rest")
    return props


def catalog_properties_for_lineage(iceberg_conn_id: str, log: Any) -> dict[str, str] | None:
    """The connection's catalog properties, read in the task's own process for its lineage later
    (OpenLineage's listener builds events in a forked child, which must not call the task's
    supervisor); None, logged, when they cannot be read: lineage never fails a task."""
    try:
        return all_catalog_properties(iceberg_conn_id)
    except Exception as err:
        log.info("Iceberg connection %s for lineage: %s", iceberg_conn_id, err)
        return None


class TableWatch:
    """One table, loaded once and refreshed cheaply on every poll.

    For a SQL catalog the probe is one indexed query for the table's metadata location; the
    metadata file is read and parsed only when that location changed. Other catalogs refresh the
    table (one catalog call).
    """

    def __init__(self, catalog: Catalog, table: str) -> None:
        self.catalog = catalog
        self.table_name = table
        self.table: Table | None = None
        self.catalog_calls = 0

    def poll(self) -> tuple[Any | None, bool]:
        """Return ``(metadata or None if the table does not exist, changed since last poll)``."""
        if self.table is None:
            return self._load()
        location = self._probe_location()
        if location is _UNKNOWN:
            before = self.table.metadata_location
            self.catalog_calls += 1
            try:
                self.table.refresh()
            except Exception as err:
                if not is_missing(err):
                    raise
                self.table = None  # dropped: wait for it to come back
                return None, True
            return self.table.metadata, self.table.metadata_location != before
        if location is None:
            # Dropped (and maybe re-created later): start over.
            self.table = None
            return None, True
        if location == self.table.metadata_location:
            return self.table.metadata, False
        return self._load()

    def _load(self) -> tuple[Any | None, bool]:
        self.catalog_calls += 1
        try:
            self.table = self.catalog.load_table(self.table_name)
        except Exception as err:
            if is_missing(err):
                self.table = None
                return None, False
            raise
        return self.table.metadata, True

    def _probe_location(self) -> Any:
        from pyiceberg.catalog.sql import IcebergTables, SqlCatalog

        if not isinstance(self.catalog, SqlCatalog):
            return _UNKNOWN
        from sqlalchemy import select

        namespace, _, name = self.table_name.rpartition(".")
        self.catalog_calls += 1
        with self.catalog.engine.connect() as conn:
            row = conn.execute(
                select(IcebergTables.metadata_location).where(
                    IcebergTables.catalog_name == self.catalog.name,
                    IcebergTables.table_namespace == namespace,
                    IcebergTables.table_name == name,
                )
            ).first()
        return row[0] if row else None


_UNKNOWN = object()
