"""Trigger that reports every new Iceberg snapshot: for AssetWatchers and the deferrable sensor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from ray_operators.iceberg_snapshots import (
    DEFAULT_OPERATIONS,
    EMPTY,
    Cursor,
    Delta,
    SnapshotFilter,
    cursor_at,
    delta_since,
    head_of,
    normalize_operations,
    parse_table_name,
)
from ray_operators.triggers._resume import hold_from, hold_until

#: Consecutive transient catalog errors tolerated before the trigger gives up.
MAX_TRANSIENT_ERRORS = 20
MAX_BACKOFF_SECONDS = 60.0
_MULTI_ASSET_ERROR = "concrete inlets and outlets"


def cursor_key(table: str, branch: str) -> str:
    """The state-store key of a watcher's cursor."""
    return f"iceberg_cursor:{table}@{branch}"


class IcebergSnapshotTrigger(BaseEventTrigger):
    """
    Fire when an Iceberg table's branch gets new qualifying snapshots: every one of them, in order.

    Each event lists *all* qualifying snapshots committed since the previous event (the parent
    chain is walked, so three commits between two polls are three entries, oldest first), with
    id, parent id, sequence number, timestamp, operation, added/deleted record counts and the
    summary properties, plus the previous and new branch head. A head that does not descend from
    the previous one (rollback, branch reset) fires ``kind="rollback"`` instead, with no snapshots.

    The cursor (the last head accounted for) lives in the asset state store when the trigger
    serves an ``AssetWatcher``, so a triggerer restart neither replays nor skips commits; the
    deferrable sensor keeps it in its task state store and passes it as ``since_snapshot_id``.
    A missing table or namespace is waited for; transient catalog errors are retried with
    back-off; bad credentials or a bad table name fail with a clear message.

    :param table: ``namespace.table`` (nested namespaces: ``a.b.table``).
    :param iceberg_conn_id: an ``iceberg`` connection (from the Apache Iceberg provider).
    :param branch: branch or tag to watch (default ``main``).
    :param poll_interval: seconds between polls.
    :param operations: snapshot operations that count (default append, overwrite, delete;
        ``replace``, i.e. compaction, is skipped).
    :param ignore_summary: skip snapshots whose summary has all these key/values (e.g. the run
        identity our own writes carry, to break feedback loops).
    :param min_added_records: skip snapshots that added fewer records.
    :param since_snapshot_id: report what came after this snapshot (ignored once a stored cursor exists).
    :param emit_on_start: when there is no cursor and no ``since_snapshot_id``, report the whole
        existing history at start (default False: a fresh watcher only reports what comes next).
    :param not_before: epoch seconds before which no event is yielded: the deferred sensor's
        (see :mod:`ray_operators.triggers._resume`); None for an AssetWatcher.
    """

    def __init__(
        self,
        *,
        table: str,
        iceberg_conn_id: str = "iceberg_default",
        branch: str = "main",
        poll_interval: float = 30.0,
        operations: Iterable[str] | None = DEFAULT_OPERATIONS,
        ignore_summary: Mapping[str, str] | None = None,
        min_added_records: int = 0,
        since_snapshot_id: int | None = None,
        emit_on_start: bool = False,
        since_sequence_number: int | None = None,
        since_timestamp_ms: int | None = None,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        parse_table_name(table)
        self.not_before = float(not_before) if not_before is not None else None
        self.table = table
        self.iceberg_conn_id = iceberg_conn_id
        self.branch = branch
        self.poll_interval = float(poll_interval)
        self.operations = normalize_operations(operations)
        self.ignore_summary = {str(k): str(v) for k, v in (ignore_summary or {}).items()}
        self.min_added_records = int(min_added_records)
        self.since_snapshot_id = int(since_snapshot_id) if since_snapshot_id is not None else None
        self.emit_on_start = bool(emit_on_start)
        # The rest of a cursor, so ordering survives the cursor's snapshot being expired.
        self.since_sequence_number = int(since_sequence_number) if since_sequence_number is not None else None
        self.since_timestamp_ms = int(since_timestamp_ms) if since_timestamp_ms is not None else None
        #: Polls made and catalog calls spent (for tests and benchmarks).
        self.polls = 0
        self.catalog_calls = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table": self.table,
                "iceberg_conn_id": self.iceberg_conn_id,
                "branch": self.branch,
                "poll_interval": self.poll_interval,
                "operations": list(self.operations),
                "ignore_summary": dict(self.ignore_summary),
                "min_added_records": self.min_added_records,
                "since_snapshot_id": self.since_snapshot_id,
                "emit_on_start": self.emit_on_start,
                "since_sequence_number": self.since_sequence_number,
                "since_timestamp_ms": self.since_timestamp_ms,
                "not_before": self.not_before,
            },
        )

    @property
    def snapshot_filter(self) -> SnapshotFilter:
        return SnapshotFilter(self.operations, self.ignore_summary, self.min_added_records)

    # ---- cursor in the state store ---------------------------------------------------------

    def _store(self) -> Any | None:
        return getattr(self, "asset_state_store", None)

    async def _store_call(self, store: Any, method: str, *args: Any) -> Any:
        # Async accessors arrived in Airflow 3.3.2; older ones are sync and must stay off the loop.
        async_method = getattr(store, f"a{method}", None)
        if async_method is not None and asyncio.iscoroutinefunction(async_method):
            return await async_method(*args)
        return await asyncio.to_thread(getattr(store, method), *args)

    async def _load_cursor(self, store: Any | None) -> tuple[Cursor | None, bool, Any | None]:
        """Return (cursor, found, store) — store is None when it cannot hold our cursor."""
        if store is None:
            return None, False, None
        try:
            value = await self._store_call(store, "get", cursor_key(self.table, self.branch))
        except ValueError as err:
            if _MULTI_ASSET_ERROR not in str(err):
                raise
            self.log.warning(
                "%s is watched by several assets with the same trigger arguments; there is no single "
                "place for its cursor, so a triggerer restart may re-report or skip commits.",
                self.table,
            )
            return None, False, None
        return Cursor.from_json(value), value is not None, store

    async def _save_cursor(self, store: Any | None, cursor: Cursor) -> None:
        if store is not None:
            await self._store_call(store, "set", cursor_key(self.table, self.branch), cursor.to_json())

    # ---- the loop --------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from ray_operators.iceberg_catalog import TableWatch, build_catalog

        started = time.time()
        cursor, found, store = await self._load_cursor(self._store())
        watch: TableWatch | None = None
        initialised = found
        errors = 0
        unsaved: Cursor | None = None
        watching = False  # the first successful poll is logged: the watch is live from then on
        while True:
            self.polls += 1
            if unsaved is not None:
                # Saved one poll after its event was handed over, by which time the triggerer has
                # stored the event: a crash in between re-reports (at least once), never loses.
                await self._save_cursor(store, unsaved)
                unsaved = None
            try:
                if watch is None:
                    watch = TableWatch(
                        await asyncio.to_thread(build_catalog, self.iceberg_conn_id), self.table
                    )
                metadata, changed = await asyncio.to_thread(watch.poll)
                errors = 0
            except Exception as err:
                errors += 1
                await asyncio.sleep(self._backoff_after(err, errors))
                continue
            finally:
                self.catalog_calls = watch.catalog_calls if watch is not None else 0

            if not initialised:
                cursor = self._initial_cursor(metadata)
                initialised = True
                if cursor is not None:
                    await self._save_cursor(store, cursor)
                changed = True
            if not watching:
                watching = True
                self.log.info(
                    "Watching %s@%s after snapshot %s",
                    self.table,
                    self.branch,
                    cursor.snapshot_id if cursor is not None else None,
                )
            if metadata is None:
                self.log.debug("%s does not exist yet; waiting", self.table)
            elif changed:
                delta = delta_since(metadata, self.branch, cursor, self.snapshot_filter)
                if delta.changed or delta.rollback:
                    event = self._event_for(delta)
                    cursor = delta.head
                    if event is not None:
                        await hold_until(hold_from(self.not_before, started))
                        yield event
                        unsaved = cursor
                    else:
                        await self._save_cursor(store, cursor)
            await asyncio.sleep(self.poll_interval)

    def _backoff_after(self, err: Exception, errors: int) -> float:
        """Seconds to wait after the ``errors``-th failed poll in a row (logged); raises when the
        error is permanent or too many came in a row."""
        from ray_operators.iceberg_catalog import IcebergWatchError, is_permanent

        if isinstance(err, IcebergWatchError) or is_permanent(err):
            raise IcebergWatchError(
                f"Watching Iceberg table {self.table!r} (connection {self.iceberg_conn_id!r}) "
                f"failed: {type(err).__name__}: {err}"
            ) from err
        if errors >= MAX_TRANSIENT_ERRORS:
            raise IcebergWatchError(
                f"Watching Iceberg table {self.table!r}: {errors} catalog errors in a row, last "
                f"{type(err).__name__}: {err}"
            ) from err
        backoff = min(self.poll_interval * 2**errors, MAX_BACKOFF_SECONDS)
        self.log.warning(
            "Polling %s failed (%s/%s), retrying in %.0fs: %s: %s",
            self.table,
            errors,
            MAX_TRANSIENT_ERRORS,
            backoff,
            type(err).__name__,
            err,
        )
        return backoff

    def _initial_cursor(self, metadata: Any | None) -> Cursor | None:
        if self.since_snapshot_id is not None:
            snap = None
            if metadata is not None:
                snap = next((s for s in metadata.snapshots if s.snapshot_id == self.since_snapshot_id), None)
            if snap is None and (self.since_sequence_number or self.since_timestamp_ms):
                return Cursor(
                    self.since_snapshot_id, self.since_sequence_number or 0, self.since_timestamp_ms or 0
                )
            if snap is None:
                self.log.warning(
                    "since_snapshot_id %s is not in %s's metadata (expired?); its ordering is unknown",
                    self.since_snapshot_id,
                    self.table,
                )
                return Cursor(self.since_snapshot_id)
            return cursor_at(snap)
        if self.emit_on_start:
            return None
        if metadata is None:
            # The table does not exist yet: everything it will ever hold is new.
            return EMPTY
        return cursor_at(head_of(metadata, self.branch))

    def _event_for(self, delta: Delta) -> TriggerEvent | None:
        payload = delta.payload(self.table, self.branch)
        payload["iceberg_conn_id"] = self.iceberg_conn_id
        if delta.rollback:
            self.log.warning(
                "%s@%s moved from %s to %s, which does not descend from it: rollback, not new data",
                self.table,
                self.branch,
                payload["previous_head"],
                payload["new_head"],
            )
            return TriggerEvent(payload)
        if delta.skipped:
            self.log.info(
                "%s: skipped %d snapshot(s) (%s)",
                self.table,
                len(delta.skipped),
                ", ".join(s["operation"] for s in delta.skipped),
            )
        if not delta.snapshots:
            return None
        self.log.info("%s: %d new snapshot(s): %s", self.table, len(delta.snapshots), payload["snapshot_ids"])
        return TriggerEvent(payload)
