"""Snapshot lineage: pure functions over Iceberg table metadata, the one home of the ancestry walk.

Everything that asks "which snapshots are on the branch" uses this module: the run-key lookup of
every write (only ancestors of the branch head count as committed, so a rolled-back write is not a
commit), incremental reads (the appends in a range), input resolution (as-of lookups), and the
sensor and trigger (what is new since a cursor).

Works on pyiceberg ``TableMetadata`` objects passed in, and walks them with pyiceberg's own
``ancestors_of`` over an O(1) snapshot index (pyiceberg is imported inside the functions only, so
the Airflow side can import this module cheaply).

Snapshot ids are random 64-bit numbers: order comes from the parent chain and sequence numbers,
never from comparing ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ray_operators.contract.lineage import RUN_KEY

DEFAULT_OPERATIONS = ("append", "overwrite", "delete")


@dataclass(frozen=True)
class Cursor:
    """The last branch head a watcher has accounted for. ``snapshot_id=None``: the empty table."""

    snapshot_id: int | None
    sequence_number: int = 0
    timestamp_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "sequence_number": self.sequence_number,
            "timestamp_ms": self.timestamp_ms,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Cursor | None:
        if value is None:
            return None
        sid = value.get("snapshot_id")
        return cls(
            snapshot_id=int(sid) if sid is not None else None,
            sequence_number=int(value.get("sequence_number") or 0),
            timestamp_ms=int(value.get("timestamp_ms") or 0),
        )


EMPTY = Cursor(None)


@dataclass(frozen=True)
class SnapshotFilter:
    """Which commits count as new data.

    :param operations: snapshot operations that qualify (``replace``, i.e. compaction, is left out
        by default).
    :param ignore_summary: skip commits whose summary contains all these key/value pairs (for
        example the run identity a DAG writes, so it does not trigger itself).
    :param min_added_records: skip commits that added fewer records.
    """

    operations: tuple[str, ...] = DEFAULT_OPERATIONS
    ignore_summary: Mapping[str, str] = field(default_factory=dict)
    min_added_records: int = 0

    def accepts(self, snap: Mapping[str, Any]) -> bool:
        if snap["operation"] not in self.operations:
            return False
        if self.ignore_summary and all(
            snap["summary"].get(k) == str(v) for k, v in self.ignore_summary.items()
        ):
            return False
        return snap["added_records"] >= self.min_added_records


@dataclass
class Delta:
    """What changed on a branch since a cursor."""

    previous: Cursor | None
    head: Cursor
    snapshots: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    rollback: bool = False
    history_gap: bool = False

    @property
    def changed(self) -> bool:
        return self.previous != self.head

    def payload(self, table: str, branch: str) -> dict[str, Any]:
        """The JSON event payload."""
        return {
            "table": table,
            "branch": branch,
            "kind": "rollback" if self.rollback else "snapshots",
            "previous_head": self.previous.to_json() if self.previous else None,
            "new_head": self.head.to_json(),
            "snapshots": self.snapshots,
            "snapshot_ids": [s["snapshot_id"] for s in self.snapshots],
            "skipped_snapshot_ids": [s["snapshot_id"] for s in self.skipped],
            "history_gap": self.history_gap,
        }


def describe(snapshot: Any) -> dict[str, Any]:
    """A pyiceberg ``Snapshot`` as the JSON-safe dict events carry."""
    summary = snapshot.summary
    props = {str(k): str(v) for k, v in dict(getattr(summary, "additional_properties", {}) or {}).items()}
    operation = getattr(summary, "operation", None)
    operation = str(getattr(operation, "value", operation) or "unknown")
    return {
        "snapshot_id": int(snapshot.snapshot_id),
        "parent_id": int(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id is not None else None,
        "sequence_number": int(snapshot.sequence_number or 0),
        "timestamp_ms": int(snapshot.timestamp_ms),
        "operation": operation,
        "added_records": int(props.get("added-records", 0)),
        "deleted_records": int(props.get("deleted-records", 0)),
        "summary": props,
    }


def head_of(metadata: Any, branch: str) -> Any | None:
    """The snapshot a branch (or tag) points at, or None when it points at nothing yet."""
    ref = metadata.refs.get(branch)
    if ref is None:
        return None
    return _by_id(metadata).get(ref.snapshot_id)


def cursor_at(snapshot: Any | None) -> Cursor:
    if snapshot is None:
        return EMPTY
    return Cursor(int(snapshot.snapshot_id), int(snapshot.sequence_number or 0), int(snapshot.timestamp_ms))


def _by_id(metadata: Any) -> dict[int, Any]:
    return {snap.snapshot_id: snap for snap in metadata.snapshots}


class SnapshotLineageError(ValueError):
    """A snapshot or range cannot be resolved on the branch; the message names the table."""


class _Index:
    """The one method pyiceberg's ancestry helpers call, backed by a dict (``TableMetadata``'s own
    ``snapshot_by_id`` is a linear search, which makes a walk quadratic in the history length)."""

    def __init__(self, metadata: Any) -> None:
        self.by_id = _by_id(metadata)

    def snapshot_by_id(self, snapshot_id: int) -> Any | None:
        return self.by_id.get(snapshot_id)


def iter_ancestors(metadata: Any, snapshot: Any | None, index: _Index | None = None) -> Iterator[Any]:
    """``snapshot`` and its ancestors, newest first (lazy: stop when you have what you need)."""
    from pyiceberg.table.snapshots import ancestors_of

    # _Index answers snapshot_by_id, all ancestors_of asks of its TableMetadata.
    return iter(ancestors_of(snapshot, index or _Index(metadata)))  # type: ignore[arg-type]


def ancestors(metadata: Any, branch: str = "main") -> list[Any]:
    """The branch head and its ancestors, newest first: the branch's history, not every snapshot
    ever made (a rollback leaves snapshots in the metadata that are no longer on it)."""
    return list(iter_ancestors(metadata, head_of(metadata, branch)))


def operation(snapshot: Any) -> str:
    op = getattr(snapshot.summary, "operation", None) if snapshot.summary is not None else None
    return str(getattr(op, "value", op) or "append")


#: Iceberg's write-audit-publish (how the Spark curate engine commits): a staged snapshot carries
#: ``wap.id``; a cherry-pick publishes it, by fast-forward (the staged snapshot itself, its summary
#: intact) or, when the branch moved meanwhile, as a new snapshot that carries ``published-wap-id``
#: and ``source-snapshot-id`` and none of the staged snapshot's own properties. Our writers use the
#: commit's run key as its WAP id.
STAGED_WAP_ID = "wap.id"
PUBLISHED_WAP_ID = "published-wap-id"
SOURCE_SNAPSHOT_ID = "source-snapshot-id"


def _summary_props(snapshot: Any) -> Mapping[str, str]:
    summary = snapshot.summary
    if summary is None:
        return {}
    props = getattr(summary, "additional_properties", None)
    return props if props is not None else summary


def summary_value(snapshot: Any, key: str) -> str | None:
    """``key`` of the snapshot's summary. A snapshot's run key is its ``lakehouse.run-key``, or, on a
    snapshot a write-audit-publish cherry-pick made, the WAP id it published."""
    props = _summary_props(snapshot)
    value = props.get(key)
    if value is None and key == RUN_KEY:
        return props.get(PUBLISHED_WAP_ID)
    return value


def lineage_of(metadata: Any, snapshot: Any) -> dict[str, str]:
    """The snapshot's summary properties; for a snapshot a cherry-pick published onto a moved
    branch, the staged snapshot's own properties under it (while that snapshot is in the
    metadata: snapshot expiry may remove it)."""
    props = {str(k): str(v) for k, v in dict(_summary_props(snapshot)).items()}
    source = props.get(SOURCE_SNAPSHOT_ID)
    if source is not None and PUBLISHED_WAP_ID in props:
        staged = _by_id(metadata).get(int(source))
        if staged is not None:
            props = {**{str(k): str(v) for k, v in dict(_summary_props(staged)).items()}, **props}
    return props


def rolled_back_ids(metadata: Any, key: str, value: str, branch: str = "main") -> list[int]:
    """Snapshots that carry ``key == value`` and are not on the branch: a rollback took them off.
    A write-audit-publish snapshot that was staged and never published (never the branch's head,
    by the table's history log) is not one of them; its publish, if any, is listed instead."""
    on_branch = {s.snapshot_id for s in iter_ancestors(metadata, head_of(metadata, branch))}
    was_current = {entry.snapshot_id for entry in getattr(metadata, "snapshot_log", None) or []}
    return [
        s.snapshot_id
        for s in metadata.snapshots
        if summary_value(s, key) == value
        and s.snapshot_id not in on_branch
        and (_summary_props(s).get(STAGED_WAP_ID) is None or s.snapshot_id in was_current)
    ]


def committed_with(metadata: Any, key: str, value: str, branch: str = "main") -> Any | None:
    """The newest snapshot *on the branch* whose summary has ``key == value`` (a run key), or None.

    Only ancestors of the branch head count: a snapshot that a rollback
    (``manage_snapshots().set_current_snapshot``, Spark's ``rollback_to_snapshot``) took off the
    branch is history, not a commit, the way Iceberg's Flink sink finds its last committed
    checkpoint. Newest, because an overwrite may commit a delete and then an append under one key.
    """
    for snap in iter_ancestors(metadata, head_of(metadata, branch)):
        if summary_value(snap, key) == value:
            return snap
    return None


def values_on_branch(metadata: Any, key: str, branch: str = "main") -> set[str]:
    """Every value of summary ``key`` (run keys) carried by a snapshot on the branch."""
    found = (summary_value(s, key) for s in iter_ancestors(metadata, head_of(metadata, branch)))
    return {v for v in found if v is not None}


def as_of(metadata: Any, timestamp_ms: int, branch: str = "main") -> Any | None:
    """The branch's snapshot as of a moment: its newest ancestor committed at or before it."""
    return next(
        (s for s in iter_ancestors(metadata, head_of(metadata, branch)) if s.timestamp_ms <= timestamp_ms),
        None,
    )


def appends_between(
    metadata: Any, from_exclusive: int | None, to_inclusive: int, *, table: str = "the table"
) -> list[Any]:
    """The snapshots in ``(from_exclusive, to_inclusive]`` on ``to``'s parent chain, oldest first.

    Every one must be an append: an overwrite or delete changed rows that are already there, so
    the range cannot be read as "what was added" (read a pinned snapshot instead).
    """
    index = _Index(metadata)
    end = index.snapshot_by_id(to_inclusive)
    if end is None:
        raise SnapshotLineageError(
            f"snapshot {to_inclusive} is not in {table} (expired, or from another table?)"
        )
    chain = []
    reached = from_exclusive is None
    for snap in iter_ancestors(metadata, end, index):
        if snap.snapshot_id == from_exclusive:
            reached = True
            break
        chain.append(snap)
    if not reached:
        raise SnapshotLineageError(
            f"snapshot {from_exclusive} is not an ancestor of {to_inclusive} in {table}"
        )
    for snap in chain:
        if operation(snap) != "append":
            raise SnapshotLineageError(
                f"snapshot {snap.snapshot_id} of {table} is a {operation(snap)}: only appends can be read "
                "incrementally; read a pinned snapshot instead"
            )
    return list(reversed(chain))


def _order_key(cursor_or_snap: Any) -> tuple[int, int]:
    # Sequence numbers order v2 tables; v1 tables have none, so timestamps stand in.
    return (int(getattr(cursor_or_snap, "sequence_number", 0) or 0), int(cursor_or_snap.timestamp_ms or 0))


def delta_since(metadata: Any, branch: str, cursor: Cursor | None, filt: SnapshotFilter) -> Delta:
    """Every snapshot on ``branch`` after ``cursor``, oldest first, split into qualifying and skipped.

    ``cursor=None`` means "from the beginning of history". A head that does not descend from the
    cursor (rollback, branch reset) yields ``rollback=True`` and no snapshots. When the cursor's
    snapshot has been expired from the metadata, the chain is walked back to the oldest snapshot
    still newer than the cursor and ``history_gap`` is set.
    """
    head = head_of(metadata, branch)
    head_cursor = cursor_at(head)
    if head is None:
        # Branch missing (dropped for now) or empty: nothing to report, and the cursor stays, so a
        # branch that comes back is compared with what we had seen, not replayed from scratch.
        return Delta(cursor, cursor if cursor is not None else head_cursor, [], [])
    if cursor is not None and cursor.snapshot_id == head.snapshot_id:
        return Delta(cursor, head_cursor, [], [])

    index = _Index(metadata)
    by_id = index.by_id
    chain: list[Any] = []
    reached_cursor = cursor is None or cursor.snapshot_id is None
    for node in iter_ancestors(metadata, head, index):
        if cursor is not None and cursor.snapshot_id is not None:
            if node.snapshot_id == cursor.snapshot_id:
                reached_cursor = True
                break
            if (cursor.sequence_number or cursor.timestamp_ms) and _order_key(node) <= _order_key(cursor):
                # Older than (or as old as) the cursor without being it: another line of history.
                break
        chain.append(node)
    # The walk ended at a snapshot whose parent was expired from the metadata.
    history_gap = (
        bool(chain) and chain[-1].parent_snapshot_id is not None and chain[-1].parent_snapshot_id not in by_id
    )
    rollback = False
    if not reached_cursor:
        if history_gap and cursor is not None and (cursor.sequence_number or cursor.timestamp_ms) and chain:
            # The cursor's snapshot was expired, but everything left is newer than it: no rollback.
            reached_cursor = True
        else:
            # Not a descendant: a rollback or branch reset. Commits made on top of the common
            # ancestor after the reset are still new data: report them with the rollback.
            rollback = True
            chain = _beyond_common_ancestor(by_id, head, cursor)
    described = [describe(snap) for snap in reversed(chain)]
    accepted = [s for s in described if filt.accepts(s)]
    skipped = [s for s in described if not filt.accepts(s)]
    return Delta(cursor, head_cursor, accepted, skipped, rollback=rollback, history_gap=history_gap)


def _beyond_common_ancestor(by_id: dict[int, Any], head: Any, cursor: Cursor | None) -> list[Any]:
    """Snapshots on head's chain (newest first) that are not ancestors of the cursor's snapshot,
    and newer than it: commits made after a rollback. Empty when the cursor's ancestry is unknown."""
    if cursor is None or cursor.snapshot_id not in by_id:
        return []
    index = _Index(SimpleNamespace(snapshots=list(by_id.values())))
    of_cursor = {s.snapshot_id for s in iter_ancestors(None, by_id[cursor.snapshot_id], index)}
    chain = []
    for node in iter_ancestors(None, head, index):
        if node.snapshot_id in of_cursor:
            break
        if _order_key(node) > _order_key(cursor):
            chain.append(node)
    return chain


def parse_table_name(table: str) -> tuple[str, str]:
    """``"a.b.t"`` -> ``("a.b", "t")``; a clear error when there is no namespace."""
    if not isinstance(table, str) or "." not in table.strip(".") or ".." in table:
        raise ValueError(f"Expected a fully-qualified Iceberg table name 'namespace.table', got {table!r}")
    namespace, _, name = table.rpartition(".")
    return namespace, name


def normalize_operations(operations: Iterable[str] | str | None) -> tuple[str, ...]:
    if operations is None:
        return DEFAULT_OPERATIONS
    if isinstance(operations, str):
        operations = [operations]
    known = {"append", "overwrite", "delete", "replace"}
    ops = tuple(str(op).lower() for op in operations)
    unknown = sorted(set(ops) - known)
    if unknown:
        raise ValueError(f"Unknown Iceberg snapshot operation(s) {unknown}; expected some of {sorted(known)}")
    return ops
