"""Snapshot lineage as records and a graph: pure functions over Iceberg table metadata.

Every lakehouse commit carries its lineage in its snapshot summary (:mod:`ray_operators.contract.lineage`):
the DAG run, task and Ray job (or Spark application) that wrote it, and the snapshot of each table
it read. :func:`table_records` turns one table's metadata into one :class:`SnapshotRecord` per
snapshot, newest first; :func:`lineage_graph` links records into ``table@snapshot ->
table@snapshot`` edges. The Airflow UI's lineage views (:mod:`ray_operators.lineage.web`) draw them.
No Airflow, no pyiceberg import: metadata objects are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ray_operators.contract import lineage as keys
from ray_operators.iceberg_snapshots import head_of, iter_ancestors, lineage_of, operation

#: ``(catalog, table, snapshot id)``: one node of the lineage graph. A raw input folder is the
#: node ``(catalog, RAW_PREFIX + path, 0)``.
NodeKey = tuple[str, str, int]
RAW_PREFIX = "raw:"


def raw_node(catalog: str, path: str) -> NodeKey:
    return (catalog, RAW_PREFIX + path, 0)


def is_raw(key: NodeKey) -> bool:
    return key[1].startswith(RAW_PREFIX)


@dataclass(frozen=True)
class Read:
    """One input of a commit: ``table`` read as ``value`` records it (``123``, ``1..5``, ``1+3``),
    up to the snapshots ``snapshot_ids``."""

    table: str
    value: str
    snapshot_ids: tuple[int, ...]


@dataclass(frozen=True)
class SnapshotRecord:
    """One snapshot of one table, with who wrote it and what it read."""

    catalog: str
    table: str
    snapshot_id: int
    parent_id: int | None
    committed_at_ms: int
    #: The table's commit order (timestamps tie within a millisecond; snapshot ids are random).
    sequence_number: int
    operation: str
    #: On the branch's ancestry (``False``: a rollback took it off, or a staged, unpublished commit).
    on_branch: bool
    #: Branches and tags that point at this snapshot.
    refs: tuple[str, ...] = ()
    added_records: int | None = None
    total_records: int | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    stage: str | None = None
    engine: str | None = None
    submission_id: str | None = None
    spark_app_id: str | None = None
    run_key: str | None = None
    model: str | None = None
    reads: tuple[Read, ...] = ()
    raw: tuple[str, ...] = ()
    #: Filled in by the Airflow side: the Ray job's dashboard page, as its task recorded it.
    ray_job_url: str | None = field(default=None, compare=False)
    #: Written by a DAG the viewer may not read: who wrote it is left out.
    hidden: bool = False

    def masked(self) -> SnapshotRecord:
        """The record without who wrote it and how (for a viewer who may not read the writing
        DAG's runs): the table's own history (snapshot, operation, what it read) stays."""
        return replace(
            self,
            model=None,
            raw=(),
            dag_id=None,
            run_id=None,
            task_id=None,
            submission_id=None,
            spark_app_id=None,
            run_key=None,
            ray_job_url=None,
            hidden=True,
        )

    @property
    def key(self) -> NodeKey:
        return (self.catalog, self.table, self.snapshot_id)

    def read_keys(self, *, raw: bool = False) -> list[NodeKey]:
        """The snapshots this commit read (and, with ``raw``, its raw input folders as nodes)."""
        keys = [(self.catalog, r.table, sid) for r in self.reads for sid in r.snapshot_ids]
        return keys + ([raw_node(self.catalog, path) for path in self.raw] if raw else [])

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("reads", "raw", "refs")}
        out["refs"] = list(self.refs)
        out["raw"] = list(self.raw)
        out["reads"] = [
            {"table": r.table, "value": r.value, "snapshot_ids": list(r.snapshot_ids)} for r in self.reads
        ]
        return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def record_of(catalog: str, table: str, metadata: Any, snapshot: Any, *, on_branch: bool) -> SnapshotRecord:
    """The record of one snapshot (its lineage as :func:`~ray_operators.iceberg_snapshots.lineage_of` reads it)."""
    props: Mapping[str, str] = lineage_of(metadata, snapshot)
    reads = tuple(
        Read(name.removeprefix(keys.INPUT_PREFIX), value, tuple(keys.read_snapshot_ids(value)))
        for name, value in sorted(props.items())
        if name.startswith(keys.INPUT_PREFIX) and name != keys.RAW_INPUT
    )
    raw = tuple(p for p in props.get(keys.RAW_INPUT, "").split(",") if p)
    refs = tuple(
        sorted(name for name, ref in metadata.refs.items() if ref.snapshot_id == snapshot.snapshot_id)
    )
    return SnapshotRecord(
        catalog=catalog,
        table=table,
        snapshot_id=int(snapshot.snapshot_id),
        parent_id=_int(snapshot.parent_snapshot_id),
        committed_at_ms=int(snapshot.timestamp_ms),
        sequence_number=int(snapshot.sequence_number or 0),
        operation=operation(snapshot),
        on_branch=on_branch,
        refs=refs,
        added_records=_int(props.get("added-records")),
        total_records=_int(props.get("total-records")),
        dag_id=props.get(keys.DAG_ID) or None,
        run_id=props.get(keys.RUN_ID) or None,
        task_id=props.get(keys.TASK_ID) or None,
        stage=props.get(keys.STAGE) or None,
        engine=props.get(keys.ENGINE) or ("ray" if props.get(keys.SUBMISSION_ID) else None),
        submission_id=props.get(keys.SUBMISSION_ID) or None,
        spark_app_id=props.get(keys.SPARK_APP_ID) or None,
        run_key=props.get(keys.RUN_KEY) or props.get("published-wap-id") or None,
        model=props.get(keys.MODEL) or None,
        reads=reads,
        raw=raw,
    )


def table_records(catalog: str, table: str, metadata: Any, branch: str = "main") -> list[SnapshotRecord]:
    """Every snapshot of the table, newest first, marked on or off ``branch``."""
    on_branch = {s.snapshot_id for s in iter_ancestors(metadata, head_of(metadata, branch))}
    records = [
        record_of(catalog, table, metadata, snap, on_branch=snap.snapshot_id in on_branch)
        for snap in metadata.snapshots
    ]
    return sorted(records, key=lambda r: (r.sequence_number, r.committed_at_ms), reverse=True)


@dataclass
class LineageGraph:
    """Nodes ``table@snapshot`` (a record, or ``None`` for a snapshot read but not in the catalog
    any more) and edges ``read -> written``."""

    nodes: dict[NodeKey, SnapshotRecord | None]
    edges: list[tuple[NodeKey, NodeKey]]


def lineage_graph(
    records: Iterable[SnapshotRecord],
    *,
    only: Iterable[NodeKey] | None = None,
    upstream: bool = False,
    raw: bool = False,
    connected: bool = False,
) -> LineageGraph:
    """The graph of ``records`` (or of the nodes ``only``), with the snapshots each node read;
    ``upstream=True`` follows the reads back, transitively, to the first commits; ``raw=True``
    adds the raw input folders curations read; ``connected=True`` leaves out nodes with no edge."""
    by_key = {r.key: r for r in records}
    wanted = set(by_key) if only is None else set(only)
    if upstream:
        todo = list(wanted)
        while todo:
            record = by_key.get(todo.pop())
            for source in record.read_keys() if record else []:
                if source not in wanted:
                    wanted.add(source)
                    todo.append(source)
    nodes: dict[NodeKey, SnapshotRecord | None] = {}
    edges: set[tuple[NodeKey, NodeKey]] = set()
    for key in wanted:
        record = nodes[key] = by_key.get(key)
        for source in record.read_keys(raw=raw) if record else []:
            nodes.setdefault(source, by_key.get(source))  # what a node read always shows
            edges.add((source, key))
    if connected:
        linked = {k for edge in edges for k in edge}
        nodes = {k: v for k, v in nodes.items() if k in linked}
    return LineageGraph(nodes=nodes, edges=sorted(edges))
