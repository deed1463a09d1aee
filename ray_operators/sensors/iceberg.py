"""Sensor that waits for new snapshots of an Iceberg table and hands their ids downstream."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from ray_operators.airflow_conf import default_deferrable
from ray_operators.iceberg_snapshots import (
    DEFAULT_OPERATIONS,
    EMPTY,
    Cursor,
    SnapshotFilter,
    as_of,
    cursor_at,
    delta_since,
    head_of,
    normalize_operations,
    parse_table_name,
)
from ray_operators.triggers._resume import not_before_from_now
from ray_operators.triggers.iceberg import IcebergSnapshotTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

CURSOR_KEY = "iceberg_cursor"
START_FROM = ("auto", "data_interval", "previous_run", "latest", "incremental")


class IcebergSnapshotSensor(BaseSensorOperator):
    """
    Wait until an Iceberg table's branch has new qualifying snapshots after a starting point.

    Returns (XCom) the event payload of :class:`~ray_operators.triggers.iceberg.IcebergSnapshotTrigger`:
    ``snapshots`` (every new qualifying snapshot, oldest first), ``snapshot_ids``,
    ``previous_head`` and ``new_head``, so downstream stages read pinned snapshot ids and never
    "whatever is current".

    The starting point, in order of precedence:

    1. the cursor this task instance already stored (a reschedule poke or a resume after deferral);
    2. ``since_snapshot_id`` when given (templated: e.g. ``{{ params.since_snapshot_id }}``);
    3. ``start_from="data_interval"`` (``auto`` picks it when the run has a data interval of
       non-zero length): the snapshot that was current at the start of the data interval;
    4. ``start_from="previous_run"`` (``auto`` falls back to it): the head the previous successful
       run of this task ended at;
    5. ``start_from="latest"`` (and the last resort): the head when the sensor starts.

    ``start_from="incremental"``: the previous run's cursor like ``previous_run``, but a first run
    (no previous cursor) starts before the first snapshot, so it takes the table's whole history.

    Deferrable by default; ``deferrable=False`` pokes in a worker (``mode="poke"`` or
    ``"reschedule"``). ``timeout``, ``soft_fail`` and ``poke_interval`` behave as in Airflow's own
    sensors. A rollback of the branch is not new data: the sensor logs it and waits on from the new
    head, or fails when ``fail_on_rollback``.

    :param table: ``namespace.table`` (templated).
    :param iceberg_conn_id: an ``iceberg`` connection.
    :param branch: branch or tag (templated, default ``main``).
    :param operations: operations that count (default append, overwrite, delete).
    :param ignore_summary: skip snapshots whose summary has all these key/values (templated).
    :param min_added_records: skip snapshots that added fewer records.
    :param since_snapshot_id: explicit starting snapshot (templated).
    :param start_from: ``auto``, ``data_interval``, ``previous_run``, ``latest`` or ``incremental``.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param fail_on_rollback: fail instead of waiting on when the branch is rolled back.
    :param reprocess_params: when the run's params name snapshots to reprocess (``snapshot_ids``,
        or ``from_snapshot_id``/``to_snapshot_id``, optionally with ``input_table``), return them at
        once instead of waiting: a UI trigger that reprocesses given snapshots.
    """

    template_fields: Sequence[str] = ("table", "branch", "since_snapshot_id", "ignore_summary")
    ui_color = "#d9f2e6"

    def __init__(
        self,
        *,
        table: str,
        iceberg_conn_id: str = "iceberg_default",
        branch: str = "main",
        operations: Iterable[str] | None = DEFAULT_OPERATIONS,
        ignore_summary: Mapping[str, str] | None = None,
        min_added_records: int = 0,
        since_snapshot_id: int | str | None = None,
        start_from: str = "auto",
        deferrable: bool | None = None,
        fail_on_rollback: bool = False,
        reprocess_params: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if start_from not in START_FROM:
            raise ValueError(f"{self.task_id}: start_from must be one of {START_FROM}, got {start_from!r}")
        self.table = table
        self.iceberg_conn_id = iceberg_conn_id
        self.branch = branch
        self.operations = normalize_operations(operations)
        self.ignore_summary = dict(ignore_summary or {})
        self.min_added_records = min_added_records
        self.since_snapshot_id = since_snapshot_id
        self.start_from = start_from
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.fail_on_rollback = fail_on_rollback
        self.reprocess_params = reprocess_params
        self._watch: Any = None
        #: What the sensor found (its XCom value), and its catalog's settings, for lineage.
        self._sensed: dict[str, Any] | None = None
        self._lineage_catalog: dict[str, str] | None = None

    # ---- entry points ----------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        parse_table_name(self.table)
        self.remember_for_lineage()
        if self.reprocess_params:
            from ray_operators.operators.inputs import requested_snapshots

            requested = requested_snapshots(context.get("params"), self.table, entry=True)
            if requested is not None:
                self.log.info("Reprocessing %s as the run's params ask: %s", self.table, requested)
                self._sensed = {
                    "table": self.table,
                    "branch": self.branch,
                    "kind": "requested",
                    "iceberg_conn_id": self.iceberg_conn_id,
                    "snapshots": [],
                    "snapshot_ids": requested.get("snapshot_ids", []),
                    **{k: v for k, v in requested.items() if k != "snapshot_ids"},
                }
                return self._sensed
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)
        if isinstance(done, PokeReturnValue) and done.is_done:
            return done.xcom_value
        self._defer(context, self._stored_cursor(context))

    def poke(self, context: Context) -> PokeReturnValue | bool:
        cursor = self._starting_cursor(context)
        metadata = self._metadata()
        if metadata is None:
            self.log.info("%s does not exist yet; waiting", self.table)
            if cursor is None:
                self._store_cursor(context, EMPTY)
            return False
        delta = delta_since(metadata, self.branch, cursor, self._filter())
        return self._outcome(context, delta.payload(self.table, self.branch), delta.head)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        self.remember_for_lineage()
        head = Cursor.from_json(event["new_head"]) or EMPTY
        done = self._outcome(context, event, head)
        if isinstance(done, PokeReturnValue) and done.is_done:
            return done.xcom_value
        # A rollback moved the cursor: wait on from the new head.
        self._defer(context, head)

    # ---- OpenLineage ---------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The watched table at the newest snapshot the sensor found (the one downstream reads
        up to), as the run's input."""
        return self._sensor_lineage(self._sensed)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """The watched table, with no version (nothing qualifying was found)."""
        return self._sensor_lineage(None)

    def remember_for_lineage(self) -> None:
        """Read the ``iceberg`` connection now, in the task's process (see
        :func:`~ray_operators.iceberg_catalog.catalog_properties_for_lineage`)."""
        if self._lineage_catalog is None:
            from ray_operators.iceberg_catalog import catalog_properties_for_lineage

            self._lineage_catalog = catalog_properties_for_lineage(self.iceberg_conn_id, self.log)

    def _sensor_lineage(self, found: dict[str, Any] | None) -> Any:
        from ray_operators.lineage.openlineage import iceberg_dataset, lineage, open_catalog

        ids = [int(i) for i in (found or {}).get("snapshot_ids") or []]
        if found and found.get("to_snapshot_id"):
            ids.append(int(found["to_snapshot_id"]))
        catalog = open_catalog(self.iceberg_conn_id, self._lineage_catalog)
        return lineage([iceberg_dataset(catalog, self.table, ids, catalog_name=self.iceberg_conn_id)], [])

    # ---- internals -------------------------------------------------------------------------

    def _outcome(self, context: Context, payload: dict[str, Any], head: Cursor) -> PokeReturnValue | bool:
        if payload["kind"] == "rollback" and not payload["snapshots"]:
            message = (
                f"{self.table}@{self.branch} was rolled back from {payload['previous_head']} to "
                f"{payload['new_head']}: no new data"
            )
            if self.fail_on_rollback:
                raise AirflowException(message)
            self.log.warning("%s; waiting for new snapshots from the new head", message)
            self._store_cursor(context, head)
            return False
        if payload["snapshots"]:
            payload = {**payload, "iceberg_conn_id": self.iceberg_conn_id}
            context["ti"].xcom_push(key=CURSOR_KEY, value=head.to_json())
            self.log.info(
                "%d new snapshot(s) in %s: %s", len(payload["snapshots"]), self.table, payload["snapshot_ids"]
            )
            self._sensed = payload
            return PokeReturnValue(is_done=True, xcom_value=payload)
        if payload.get("skipped_snapshot_ids"):
            # Compaction or own writes only: move past them so they are not looked at again.
            self._store_cursor(context, head)
        return False

    def _defer(self, context: Context, cursor: Cursor | None) -> None:
        self.defer(
            trigger=IcebergSnapshotTrigger(
                table=self.table,
                iceberg_conn_id=self.iceberg_conn_id,
                branch=self.branch,
                poll_interval=self.poke_interval,
                operations=self.operations,
                ignore_summary=self.ignore_summary,
                min_added_records=self.min_added_records,
                since_snapshot_id=cursor.snapshot_id if cursor else None,
                since_sequence_number=cursor.sequence_number if cursor else None,
                since_timestamp_ms=cursor.timestamp_ms if cursor else None,
                emit_on_start=cursor is None or cursor.snapshot_id is None,
                not_before=not_before_from_now(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def _filter(self) -> SnapshotFilter:
        return SnapshotFilter(self.operations, self.ignore_summary, int(self.min_added_records))

    def _metadata(self) -> Any | None:
        from ray_operators.iceberg_catalog import TableWatch, build_catalog

        if self._watch is None:
            self._watch = TableWatch(build_catalog(self.iceberg_conn_id), self.table)
        metadata, _ = self._watch.poll()
        return metadata

    def _store_cursor(self, context: Context, cursor: Cursor) -> None:
        store = context.get("task_state_store")
        if store is not None:
            store.set(CURSOR_KEY, cursor.to_json())
        self._cursor = cursor

    def _stored_cursor(self, context: Context) -> Cursor | None:
        if getattr(self, "_cursor", None) is not None:
            return self._cursor
        store = context.get("task_state_store")
        value = store.get(CURSOR_KEY) if store is not None else None
        return Cursor.from_json(value if isinstance(value, dict) else None)

    def _starting_cursor(self, context: Context) -> Cursor | None:
        stored = self._stored_cursor(context)
        if stored is not None:
            return stored
        cursor = self._resolve_start(context)
        self._store_cursor(context, cursor)
        self.log.info("Watching %s@%s for snapshots after %s", self.table, self.branch, cursor.to_json())
        return cursor

    def _resolve_start(self, context: Context) -> Cursor:
        metadata = self._metadata()
        if self.since_snapshot_id not in (None, "", "None"):
            sid = int(self.since_snapshot_id)
            snap = next((s for s in metadata.snapshots if s.snapshot_id == sid), None) if metadata else None
            if snap is None:
                raise AirflowException(
                    f"since_snapshot_id {sid} is not a snapshot of {self.table} (expired, or a typo?)"
                )
            return cursor_at(snap)
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        mode = self.start_from
        if mode == "auto":
            mode = (
                "data_interval" if start is not None and end is not None and end > start else "previous_run"
            )
        if mode == "data_interval" and start is not None:
            return self._current_at(metadata, int(start.timestamp() * 1000))
        if mode == "incremental":
            # After the previous run's last snapshot; the first run takes the whole history.
            return self._previous_run_cursor(context) or EMPTY
        if mode in ("previous_run", "data_interval"):
            previous = self._previous_run_cursor(context)
            if previous is not None:
                return previous
        return cursor_at(head_of(metadata, self.branch)) if metadata is not None else EMPTY

    def _current_at(self, metadata: Any | None, timestamp_ms: int) -> Cursor:
        """The branch's snapshot as of a moment: the newest ancestor of the head committed by then."""
        if metadata is None:
            return EMPTY
        return cursor_at(as_of(metadata, timestamp_ms, self.branch))

    def _previous_run_cursor(self, context: Context) -> Cursor | None:
        try:
            value = context["ti"].xcom_pull(task_ids=self.task_id, key=CURSOR_KEY, include_prior_dates=True)
        except Exception as err:  # runs without a logical date cannot look back by date
            self.log.info("No previous run cursor (%s)", err)
            return None
        return Cursor.from_json(value) if isinstance(value, dict) else None
