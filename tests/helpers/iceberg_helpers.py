"""Real Iceberg tables for tests: a pyiceberg SqlCatalog on a sqlite file with a file:// warehouse.

Also a command line, so commits can come from another process:
``python tests/helpers/iceberg_helpers.py ROOT CATALOG TABLE ACTION [ARG]`` with ACTION one of
``create``, ``append N`` (N separate commits), ``append-at-once N`` (N snapshots in one catalog
commit: a reader sees none or all of them), ``compact``, ``own-write KEY=VALUE``, ``rollback``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

SCHEMA = pa.schema([("id", pa.int64()), ("value", pa.string())])
#: Raw rows for the preprocess stage tests: numbers, a category and a text.
RAW_FEATURES = pa.schema(
    [("x", pa.float64()), ("y", pa.float64()), ("color", pa.string()), ("text", pa.string())]
)


def raw_feature_batch(start: int, n: int) -> pa.Table:
    """Rows ``start .. start+n-1`` of :data:`RAW_FEATURES` (x = i, three colors in turn)."""
    return pa.table(
        {
            "x": [float(i) for i in range(start, start + n)],
            "y": [1.0] * n,
            "color": [("red", "green", "blue")[i % 3] for i in range(start, start + n)],
            "text": [f"Hello World {i}" for i in range(start, start + n)],
        },
        schema=RAW_FEATURES,
    )


def catalog_properties(root: Path) -> dict[str, str]:
    return {"type": "sql", "uri": f"sqlite:///{root}/catalog.db", "warehouse": f"file://{root}/warehouse"}


def connection_env(conn_id: str, root: Path) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` for an ``iceberg`` connection to this catalog (the provider's type)."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(
            {"conn_type": "iceberg", "extra": catalog_properties(root)}
        )
    }


def open_catalog(root: Path, name: str):
    from pyiceberg.catalog import load_catalog

    root.mkdir(parents=True, exist_ok=True)
    (root / "warehouse").mkdir(exist_ok=True)
    # The catalog name must be the connection id: SqlCatalog keys tables by catalog name.
    return load_catalog(name, **catalog_properties(root))


def create(catalog, table: str):
    namespace = table.rpartition(".")[0]
    catalog.create_namespace_if_not_exists(namespace)
    return catalog.create_table_if_not_exists(table, schema=SCHEMA)


def append(
    catalog, table: str, commits: int = 1, rows: int = 3, props: dict[str, str] | None = None
) -> list[int]:
    tbl = catalog.load_table(table)
    ids = []
    for _ in range(commits):
        start = (
            int(tbl.metadata.snapshots[-1].summary.get("total-records", 0)) if tbl.metadata.snapshots else 0
        )
        data = pa.table(
            {"id": list(range(start, start + rows)), "value": [f"v{i}" for i in range(rows)]}, schema=SCHEMA
        )
        tbl.append(data, snapshot_properties=props or {})
        ids.append(tbl.metadata.current_snapshot_id)
    return ids


def append_at_once(catalog, table: str, snapshots: int) -> list[int]:
    """``snapshots`` append snapshots made in one transaction: they land on the branch together."""
    tbl = catalog.load_table(table)
    start = int(tbl.metadata.snapshots[-1].summary.get("total-records", 0)) if tbl.metadata.snapshots else 0
    with tbl.transaction() as tx:
        for i in range(snapshots):
            first = start + 3 * i
            tx.append(
                pa.table({"id": list(range(first, first + 3)), "value": ["v0", "v1", "v2"]}, schema=SCHEMA)
            )
    tbl = catalog.load_table(table)
    ids = [s.snapshot_id for s in tbl.metadata.snapshots]
    return ids[-snapshots:]


def compact(catalog, table: str) -> int:
    """Rewrite all data files into one: a real ``replace`` commit, as a compaction job makes."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files
    from pyiceberg.table.snapshots import Operation, Summary

    tbl = catalog.load_table(table)
    data = tbl.scan().to_arrow()
    old_files = [task.file for task in tbl.scan().plan_files()]
    with tbl.transaction() as tx:
        new_files = list(_dataframe_to_data_files(table_metadata=tx.table_metadata, df=data, io=tbl.io))
        with tx.update_snapshot().overwrite() as rewrite:
            # pyiceberg writes no `replace` snapshots itself: label this rewrite as one.
            overwrite_summary = rewrite._summary

            def replace_summary(props, _summary=overwrite_summary):
                summary = _summary(props)
                return Summary(Operation.REPLACE, **summary.additional_properties)

            rewrite._summary = replace_summary
            for f in old_files:
                rewrite.delete_data_file(f)
            for f in new_files:
                rewrite.append_data_file(f)
    tbl.refresh()
    assert tbl.metadata.current_snapshot().summary.operation == Operation.REPLACE
    return tbl.metadata.current_snapshot_id


def rollback(catalog, table: str) -> int:
    """Point main back at the head's parent (what `CALL system.rollback_to_snapshot` does)."""
    tbl = catalog.load_table(table)
    parent = tbl.metadata.current_snapshot().parent_snapshot_id
    tbl.manage_snapshots().rollback_to_snapshot(parent).commit()
    return parent


def main(argv: list[str]) -> Any:
    root, name, table, action, *rest = argv
    catalog = open_catalog(Path(root), name)
    if action == "create":
        create(catalog, table)
        return None
    if action == "append":
        return append(catalog, table, commits=int(rest[0]) if rest else 1)
    if action == "append-at-once":
        return append_at_once(catalog, table, int(rest[0]))
    if action == "compact":
        return compact(catalog, table)
    if action == "own-write":
        key, _, value = rest[0].partition("=")
        return append(catalog, table, props={key: value})
    if action == "rollback":
        return rollback(catalog, table)
    raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
