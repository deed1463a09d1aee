"""Resolve a stage's input references to pinned snapshots at run time.

A generated pipeline task carries ``input_refs``: for each input table, where its snapshot comes
from and how to read it (see ``ray_operators.pipelines.graph``). At run time, in this order:

1. the run's params ``snapshot_ids`` (or ``from_snapshot_id``/``to_snapshot_id``), for the entry
   inputs (tables no stage of this pipeline produces) or the one named by ``input_table``: a UI
   trigger that reprocesses exactly those snapshots;
2. a producing stage upstream: the snapshot that stage committed in this run (its XCom): only the
   data it appended (``source.appended``), or the whole table as of it (training);
3. a sensor upstream: the snapshots it returned;
4. the triggering asset events of an asset-driven run: every snapshot they carry for the table;
5. the read mode: ``as_of_interval_end`` (the snapshot current at the end of the data interval),
   ``interval_commits`` (the appends committed within it), ``current`` or ``pinned`` (the head
   when the task starts, pinned from then on).

The run key follows the data: the snapshot ids for 1-4, the data interval for time-based reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context


class InputResolutionError(ValueError):
    """An input's snapshots cannot be determined; the message names the table and the source."""


def requested_snapshots(params: Any, table: str, entry: bool) -> dict[str, Any] | None:
    """The snapshots a trigger's params ask to reprocess for ``table``, or None."""
    params = dict(params or {})
    wanted = params.get("input_table")
    if wanted not in (None, "", table) or (wanted in (None, "") and not entry):
        return None
    ids = params.get("snapshot_ids")
    if isinstance(ids, str):
        ids = json.loads(ids or "[]")
    if ids:
        return {"snapshot_ids": list(dict.fromkeys(int(i) for i in ids))}
    to_id = params.get("to_snapshot_id")
    if to_id not in (None, ""):
        from_id = params.get("from_snapshot_id")
        return {
            "from_snapshot_id": int(from_id) if from_id not in (None, "") else None,
            "to_snapshot_id": int(to_id),
        }
    return None


def resolve_inputs(
    refs: Sequence[dict[str, Any]], context: Context, iceberg_conn_id: str, load_metadata: Any = None
) -> tuple[list[dict[str, Any]], str | None]:
    """(``TableInput`` dicts, run-key identity or None for the default rule).

    :param load_metadata: ``table name -> TableMetadata`` for the read modes; default: the
        ``iceberg`` connection's catalog.
    """
    inputs: list[dict[str, Any]] = []
    identities: list[str] = []
    for ref in refs:
        item, identity = _resolve(ref, context, iceberg_conn_id, load_metadata)
        for key in ("columns", "row_filter"):
            if ref.get(key):
                item[key] = ref[key]
        if ref.get("slice_column"):
            item["row_filter"] = _and(
                item.get("row_filter"), _interval_filter(ref["slice_column"], context, ref["table"])
            )
        inputs.append(item)
        identities.append(identity)
    if any(i.startswith("snapshots") for i in identities):
        return inputs, ";".join(identities)
    return inputs, None


def _resolve(
    ref: dict[str, Any], context: Context, conn_id: str, load_metadata: Any = None
) -> tuple[dict[str, Any], str]:
    table = ref["table"]
    source = ref.get("source") or {"kind": "table"}
    entry = source.get("kind") != "stage"
    requested = requested_snapshots(context.get("params"), table, entry)
    if requested is not None:
        return {"table": table, **requested}, "snapshots=" + _ids(requested)
    if source.get("kind") == "stage":
        value = context["ti"].xcom_pull(task_ids=source["task"]) or {}
        output = (value.get("result") or {}).get("output") or {}
        if output.get("table") != table or output.get("snapshot_id") is None:
            raise InputResolutionError(
                f"input {table}: upstream stage {source['task']} reported no snapshot of it (result: {output or None})"
            )
        sid = int(output["snapshot_id"])
        if source.get("appended"):
            return {"table": table, "snapshot_ids": [sid]}, f"snapshots={sid}"
        return {"table": table, "snapshot_id": sid}, f"snapshots={sid}"
    if source.get("kind") == "sensor":
        payload = context["ti"].xcom_pull(task_ids=source["task"])
        if not payload:
            raise InputResolutionError(f"input {table}: sensor {source['task']} returned no snapshots")
        if payload.get("kind") == "rollback" or not payload.get("snapshot_ids"):
            head = (payload.get("new_head") or {}).get("snapshot_id")
            if head is None:
                raise InputResolutionError(
                    f"input {table}: sensor {source['task']} returned no snapshot to read"
                )
            return {"table": table, "snapshot_id": int(head)}, f"snapshots={int(head)}"
        ids = [int(s) for s in payload["snapshot_ids"]]
        return {"table": table, "snapshot_ids": ids}, "snapshots=" + "+".join(map(str, ids))
    events = _event_snapshots(context, table, conn_id)
    if events:
        return {"table": table, "snapshot_ids": events}, "snapshots=" + "+".join(map(str, events))
    return _by_read_mode(ref, context, conn_id, load_metadata)


def _ids(requested: dict[str, Any]) -> str:
    if "snapshot_ids" in requested:  # the same snapshots in any order are the same run
        return "+".join(map(str, sorted(requested["snapshot_ids"])))
    return f"{requested['from_snapshot_id']}..{requested['to_snapshot_id']}"


def _event_snapshots(context: Context, table: str, conn_id: str) -> list[int]:
    events = context.get("triggering_asset_events") or {}
    if not events:
        return []
    from ray_operators.assets import iceberg_asset_uri, snapshot_ids_from_events

    uri = iceberg_asset_uri(table, conn_id)
    try:
        mine = {asset: evs for asset, evs in dict(events).items() if getattr(asset, "uri", asset) == uri}
    except (TypeError, ValueError):
        return []
    return snapshot_ids_from_events(mine)


def _by_read_mode(
    ref: dict[str, Any], context: Context, conn_id: str, load_metadata: Any = None
) -> tuple[dict[str, Any], str]:
    if load_metadata is None:
        from ray_operators.iceberg_catalog import build_catalog

        def load_metadata(table: str) -> Any:
            return build_catalog(conn_id).load_table(table).metadata

    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    return by_read_mode(ref, load_metadata(ref["table"]), start, end)


def by_read_mode(ref: dict[str, Any], metadata: Any, start: Any, end: Any) -> tuple[dict[str, Any], str]:
    """An input by its read mode, from the table's metadata (pure: no catalog, no Airflow)."""
    from ray_operators.iceberg_snapshots import ancestors, as_of, operation

    table_name = ref["table"]
    read = ref.get("read", "pinned")
    chain = ancestors(metadata, "main")
    interval = (
        f"interval={start.isoformat()}/{end.isoformat()}" if start is not None and end is not None else None
    )
    if read == "interval_commits" and start is not None and end is not None:
        lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        ids = [
            s.snapshot_id for s in reversed(chain) if lo < s.timestamp_ms <= hi and operation(s) == "append"
        ]
        return {"table": table_name, "snapshot_ids": ids}, interval or "interval"
    if read == "as_of_interval_end" and end is not None:
        snap = as_of(metadata, int(end.timestamp() * 1000), "main")
        if snap is None:
            raise InputResolutionError(
                f"input {table_name}: no snapshot existed at the end of the data interval ({end.isoformat()})"
            )
        return {
            "table": table_name,
            "snapshot_id": snap.snapshot_id,
        }, interval or f"snapshots={snap.snapshot_id}"
    head = chain[0] if chain else None
    if head is None:
        raise InputResolutionError(f"input {table_name}: the table has no snapshot yet")
    return {"table": table_name, "snapshot_id": head.snapshot_id}, interval or f"snapshots={head.snapshot_id}"


def _interval_filter(column: str, context: Context, table: str) -> str:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise InputResolutionError(
            f"input {table}: slice_column {column} needs a data interval, and this run has none "
            "(trigger it with a logical date, or leave slice_column out)"
        )
    return f"{column} >= '{start.isoformat()}' and {column} < '{end.isoformat()}'"


def _and(a: str | None, b: str) -> str:
    return f"({a}) and ({b})" if a else b
