"""OpenLineage datasets and facets for the stages, the Spark curation job and the sensor.

Imported only from the operators' ``get_openlineage_facets_on_complete`` / ``_on_failure`` (the
OpenLineage listener calls them after a task ends), never at DAG parse time.

Every Iceberg table is one dataset, named by :mod:`ray_operators.lineage.naming` (its physical
location, plus a ``TABLE`` symlink ``namespace.table`` under the catalog's URI), with:

- ``version``: ``DatasetVersionDatasetFacet``, the snapshot id read or written;
- ``schema``: the table's schema at that snapshot;
- ``symlinks``: the catalog name of the table.

Raw input folders (curation) are datasets named by their location. The run carries one custom
facet, ``rayLakehouse`` (:class:`RayLakehouseRunFacet`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attr
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    RunFacet,
    dataset_version_dataset,
    schema_dataset,
    symlinks_dataset,
)

from ray_operators.lineage.naming import catalog_namespace, storage_name

#: The facet's schema id: a URN, as the project has no public schema host; the schema itself is
#: ``docs/openlineage/RayLakehouseRunFacet.json`` (its ``$id``).
RUN_FACET_SCHEMA_URL = (
    "urn:airflow-provider-ray-lakehouse:openlineage:RayLakehouseRunFacet:1#/$defs/RayLakehouseRunFacet"
)
#: The key of the custom run facet in an event's ``run.facets``.
RUN_FACET = "rayLakehouse"


@attr.define
class RayLakehouseRunFacet(RunFacet):
    """What ran: the Ray job (submission id, status, dashboard URL) or the Spark application, the
    stage's run key, and the fitted preprocessing state it applied.

    :param stage: ``curate``, ``preprocess``, ``train``, ``infer`` (or ``sensor``).
    :param engine: ``ray`` or ``spark``.
    :param submissionId: the Ray job's submission id.
    :param status: the Ray job's final status (``SUCCEEDED``, ``FAILED``, ``STOPPED``), or the
        Spark application's outcome.
    :param dashboardUrl: the Ray job's page in the Ray dashboard.
    :param runKey: the exactly-once key the stage committed (or would have committed) under.
    :param fittedStateVersion: the version of the fitted preprocessing state applied.
    :param sparkAppId: the Spark application id of a Spark curation run.
    """

    stage: str | None = attr.field(default=None)
    engine: str | None = attr.field(default=None)
    submissionId: str | None = attr.field(default=None)
    status: str | None = attr.field(default=None)
    dashboardUrl: str | None = attr.field(default=None)
    runKey: str | None = attr.field(default=None)
    fittedStateVersion: int | None = attr.field(default=None)
    sparkAppId: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return RUN_FACET_SCHEMA_URL


def _schema_fields(fields: Iterable[Any]) -> list[schema_dataset.SchemaDatasetFacetFields]:
    out = []
    for field in fields:
        kind = field.field_type
        nested = _schema_fields(kind.fields) if getattr(kind, "is_struct", False) else []
        out.append(
            schema_dataset.SchemaDatasetFacetFields(
                name=field.name,
                type=str(kind),
                description=field.doc or None,
                fields=nested or None,
            )
        )
    return out


def open_catalog(conn_id: str, properties: Mapping[str, str] | None) -> Any | None:
    """The catalog of an ``iceberg`` connection for lineage: from ``properties`` the task read while
    it ran (the OpenLineage listener calls us in a forked child, which must not talk to the task's
    supervisor), else through the connection; ``None`` when it cannot be opened (datasets are then
    named by the catalog alone)."""
    try:
        if properties is not None:
            from pyiceberg.catalog import load_catalog

            return load_catalog(conn_id, **dict(properties))
        from ray_operators.iceberg_catalog import build_catalog

        return build_catalog(conn_id)
    except Exception:  # lineage never fails a task
        return None


def _newest(metadata: Any, snapshot_ids: list[int]) -> int | None:
    """Of the snapshots read, the newest on the table (by sequence number): the version read up to."""
    known = [metadata.snapshot_by_id(int(s)) for s in snapshot_ids]
    known = [s for s in known if s is not None]
    if not known:
        return int(snapshot_ids[-1]) if snapshot_ids else None
    return int(max(known, key=lambda s: (s.sequence_number or 0, s.timestamp_ms)).snapshot_id)


def iceberg_dataset(
    catalog: Any | None,
    table: str,
    snapshot_id: int | list[int] | None = None,
    *,
    output: bool = False,
    catalog_name: str = "",
) -> InputDataset | OutputDataset:
    """The dataset of ``table`` in ``catalog`` at ``snapshot_id`` (of several, the newest), with the
    schema then; without a snapshot id, the table with its current schema and no version. A table
    that cannot be loaded (not created yet, when a run failed; no catalog) is named by its catalog
    symlink alone."""
    cls = OutputDataset if output else InputDataset
    name_of_catalog = getattr(catalog, "name", None) or catalog_name
    symlink = symlinks_dataset.Identifier(
        namespace=catalog_namespace(dict(getattr(catalog, "properties", {}) or {}), name_of_catalog),
        name=table,
        type="TABLE",
    )
    facets: dict[str, Any] = {"symlinks": symlinks_dataset.SymlinksDatasetFacet(identifiers=[symlink])}
    if catalog is None:
        return cls(namespace=symlink.namespace, name=table, facets=facets)
    try:
        metadata = catalog.load_table(table).metadata
        ids = [
            int(i) for i in (snapshot_id if isinstance(snapshot_id, list) else [snapshot_id]) if i is not None
        ]
        version = _newest(metadata, ids) if ids else None
        schema = metadata.schema()
        if version is not None:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(version)
            )
            snapshot = metadata.snapshot_by_id(version)
            if snapshot is not None and snapshot.schema_id is not None:
                schema = next((s for s in metadata.schemas if s.schema_id == snapshot.schema_id), schema)
        facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=_schema_fields(schema.fields))
        namespace, name = storage_name(metadata.location)
    except Exception:  # lineage never fails a task: name it by the catalog
        return cls(namespace=symlink.namespace, name=table, facets={"symlinks": facets["symlinks"]})
    return cls(namespace=namespace, name=name, facets=facets)


def location_dataset(location: str) -> InputDataset:
    """A raw input file or folder, named by its location."""
    namespace, name = storage_name(location)
    return InputDataset(namespace=namespace, name=name)


def pinned_versions(item: Mapping[str, Any]) -> list[int]:
    """The snapshots an input's read ended at (a ``TableInput`` as JSON): the pinned snapshot, the
    range's end, or each of a list; empty when none is known (or not a number: an unrendered
    template, on a task that failed before rendering)."""
    try:
        for key in ("snapshot_id", "to_snapshot_id"):
            if item.get(key) is not None:
                return [int(item[key])]
        return [int(i) for i in item.get("snapshot_ids") or []]
    except (TypeError, ValueError):
        return []


def lineage(
    inputs: list[Any], outputs: list[Any], facet: RayLakehouseRunFacet | None = None
) -> OperatorLineage:
    return OperatorLineage(
        inputs=inputs, outputs=outputs, run_facets={RUN_FACET: facet} if facet is not None else {}
    )
