"""Incremental reads go through Iceberg: field-id projection across schema changes, row filters on
ranges, the catalog's FileIO, and non-append snapshots refused. Real Ray head and SqlCatalog."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.types import DoubleType

from ray_operators.contract.result import parse_result
from ray_operators.contract.spec import StageSpec
from tests.helpers.iceberg_helpers import catalog_properties
from tests.helpers.ray_helpers import run_job

pytestmark = pytest.mark.integration


def _read(hook, iceberg, item: dict, name: str) -> dict:
    spec = StageSpec.from_json(
        {
            "stage": "preprocess",
            "catalog_name": iceberg.conn_id,
            "catalog_properties": catalog_properties(iceberg.root),
            "output_table": "db.unused",
            "inputs": [item],
            "run": {"run_key": f"read/{name}"},
        }
    )
    logs = run_job(hook, f"python read_input.py {spec.encode()}", f"read-{name}", timeout=240)
    return parse_result(logs)


def test_range_reads_follow_schema_evolution_and_filters(airflow_db, ray_head, hook, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("db")
    table = iceberg.catalog.create_table(
        "db.evolving", schema=pa.schema([("id", pa.int64()), ("v", pa.string())])
    )
    table.append(pa.table({"id": [1, 2], "v": ["a", "b"]}, schema=table.schema().as_arrow()))
    start = table.metadata.current_snapshot_id
    table.append(pa.table({"id": [3], "v": ["c"]}, schema=table.schema().as_arrow()))
    # Between appends: a column is added, then one is renamed (field ids stay, names change).
    with table.update_schema() as update:
        update.add_column("score", DoubleType())
    table = iceberg.catalog.load_table("db.evolving")
    table.append(pa.table({"id": [4], "v": ["d"], "score": [0.5]}, schema=table.schema().as_arrow()))
    with table.update_schema() as update:
        update.rename_column("v", "label")
    table = iceberg.catalog.load_table("db.evolving")
    table.append(pa.table({"id": [5], "label": ["e"], "score": [1.5]}, schema=table.schema().as_arrow()))
    end = table.metadata.current_snapshot_id

    out = _read(
        hook, iceberg, {"table": "db.evolving", "from_snapshot_id": start, "to_snapshot_id": end}, "range"
    )
    # Files written before the rename and before the new column are projected by field id: the
    # old "v" values come back as "label", the missing score as null. Only the range's 3 appends.
    assert out["columns"] == ["id", "label", "score"]
    assert out["rows"] == [
        {"id": 3, "label": "c", "score": None},
        {"id": 4, "label": "d", "score": 0.5},
        {"id": 5, "label": "e", "score": 1.5},
    ]
    assert out["files"] == 3

    filtered = _read(
        hook,
        iceberg,
        {"table": "db.evolving", "from_snapshot_id": start, "to_snapshot_id": end, "row_filter": "id >= 4"},
        "filtered",
    )
    assert [r["id"] for r in filtered["rows"]] == [4, 5]
    snapshot_list = _read(
        hook,
        iceberg,
        {"table": "db.evolving", "snapshot_ids": [end, start], "columns": ["id", "label"]},
        "list",
    )
    assert snapshot_list["rows"] == [
        {"id": 1, "label": "a"},
        {"id": 2, "label": "b"},
        {"id": 5, "label": "e"},
    ]

    # A non-append in the range is still an error that names the snapshot.
    table.delete("id = 1")
    deleted = iceberg.catalog.load_table("db.evolving").metadata.current_snapshot_id
    refused = _read(
        hook, iceberg, {"table": "db.evolving", "from_snapshot_id": end, "to_snapshot_id": deleted}, "del"
    )
    assert refused["error"].startswith(f"snapshot {deleted} of db.evolving is a ")
    assert "only appends can be read incrementally" in refused["error"]
