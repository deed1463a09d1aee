"""The one write path of every stage: exactly once per run key, with lineage in the snapshot
summary, committed on the branch head. Runs on the Ray cluster and imports no Airflow.

A write whose run key is already committed *on the branch* (an ancestor of its head) writes
nothing and reports that snapshot; a snapshot a rollback took off the branch does not count.
"""

from __future__ import annotations

from typing import Any

from ray_operators.contract.lineage import REPLACES_ROLLED_BACK, RUN_KEY
from ray_operators.contract.spec import StageError, StageSpec
from ray_operators.jobs.iceberg_sink import AlreadyCommitted, without_commit_rebase
from ray_operators.jobs.timing import phase

#: Writes retried after a commit conflict with an unrelated concurrent writer.
COMMIT_ATTEMPTS = 4


def find_committed(table: Any, run_key: str, branch: str = "main") -> Any | None:
    """The newest snapshot on ``branch`` (the head's ancestry) that carries ``run_key``, if any."""
    from ray_operators.iceberg_snapshots import committed_with

    return committed_with(table.metadata, RUN_KEY, run_key, branch)


def _rolled_back(table: Any, run_key: str) -> dict[str, str]:
    """Lineage for a write whose run key is not on the branch but was committed once: the snapshots
    a rollback took off the branch (the re-run writes again, and says what it replaces)."""
    from ray_operators.iceberg_snapshots import rolled_back_ids

    gone = [str(s) for s in rolled_back_ids(table.metadata, RUN_KEY, run_key)]
    return {REPLACES_ROLLED_BACK: ",".join(gone)} if gone else {}


def validate_schema(table: Any, schema: Any, mode: str, keys: list[str]) -> None:
    """Fail before writing when the data does not fit the table; name the columns."""
    check_schema(table.schema(), schema, mode, keys, _name(table))


def check_schema(table_schema: Any, schema: Any, mode: str, keys: list[str], name: str) -> None:
    """:func:`validate_schema` on an Iceberg schema (what a write task has)."""
    table_fields = {f.name: f for f in table_schema.fields}
    data_fields = {f.name: f for f in schema}
    missing = sorted(name for name, f in table_fields.items() if f.required and name not in data_fields)
    extra = sorted(set(data_fields) - set(table_fields))
    problems = []
    if missing:
        problems.append(f"missing required column(s) {missing}")
    if extra:
        problems.append(f"column(s) {extra} are not in the table")
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    expected = schema_to_pyarrow(table_schema)
    for column, data_field in data_fields.items():
        if column in table_fields:
            want = expected.field(column).type
            if not _compatible(data_field.type, want):
                problems.append(f"column {column!r} is {data_field.type}, the table has {want}")
    missing_keys = sorted(set(keys) - set(data_fields))
    if mode == "upsert" and missing_keys:
        problems.append(f"upsert key column(s) {missing_keys} are not in the data")
    if problems:
        raise StageError(f"schema mismatch writing {name}: " + "; ".join(problems))


def _name(table: Any) -> str:
    name = table.name()
    return ".".join(name) if isinstance(name, tuple) else str(name)


def _compatible(have: Any, want: Any) -> bool:
    import pyarrow as pa

    if have == want:
        return True
    promotions = {
        (pa.int32(), pa.int64()),
        (pa.float32(), pa.float64()),
        (pa.string(), pa.large_string()),
        (pa.large_string(), pa.string()),
        (pa.binary(), pa.large_binary()),
    }
    if (have, want) in promotions:
        return True
    if pa.types.is_timestamp(have) and pa.types.is_timestamp(want):
        return True
    if (pa.types.is_list(have) or pa.types.is_large_list(have)) and (
        pa.types.is_list(want) or pa.types.is_large_list(want)
    ):
        return True
    return False


def _done(name: str, snap: Any, skipped: bool) -> dict[str, Any]:
    return {"table": name, "snapshot_id": snap.snapshot_id, "rows": _added_records(snap), "skipped": skipped}


def commit_exactly_once(
    spec: StageSpec,
    ds: Any,
    *,
    table: str | None = None,
    schema: Any = None,
    extra_properties: dict[str, str] | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """Write ``ds`` to the output table once per run key; return the committed snapshot's facts.

    The data is computed once, by the write: no ``count()`` and no ``schema()`` peek before it
    (either would run the pipeline's first block, user transforms and inference actors included,
    one more time). The data's schema is checked before the write when it is known without
    executing anything (``schema``, or a materialized dataset); otherwise every block is checked
    inside the write, before its file is written, and a mismatch fails the write before any commit.

    An empty dataset still commits (an empty snapshot carrying the run key), so a re-run can tell
    "done, nothing to write" from "never ran".

    :param mode: override ``spec.mode`` (``overwrite`` without a slice: replace the whole table).
    """
    name = table or spec.output_table
    mode = mode or spec.mode
    catalog = spec.load_catalog()
    tbl = catalog.load_table(name)
    done = find_committed(tbl, spec.run_key)
    if done is not None:
        return _done(name, done, True)
    props = {**spec.lineage_properties(), **_rolled_back(tbl, spec.run_key), **(extra_properties or {})}
    data_schema = None
    if ds is not None:
        data_schema = schema if schema is not None else _known_schema(ds)
        if data_schema is not None:
            validate_schema(tbl, data_schema, mode, spec.keys)
        if schema is not None:
            # Conform every block to the declared schema (column order, units, time zones).
            ds = ds.map_batches(_Conform(schema), batch_format="pyarrow")
    skipped = False
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            if ds is not None:
                _write(spec, ds, name, props, data_schema, mode)
                tbl = catalog.load_table(name)
            if find_committed(tbl, spec.run_key) is None:
                # Nothing to write (Ray commits nothing for an empty dataset): record completion
                # anyway. The check and the commit share one base: pyiceberg asserts it.
                _commit_empty(spec, without_commit_rebase(tbl), props, mode)
            break
        except AlreadyCommitted:
            skipped = True
            break
        except Exception as err:
            if not _is_commit_conflict(err) or attempt == COMMIT_ATTEMPTS:
                raise
            # Another writer committed since our base snapshot: if it wrote this run key, the run
            # is done (our data files stay unreferenced); otherwise write again on the new head.
            tbl = catalog.load_table(name)
            if find_committed(tbl, spec.run_key) is not None:
                print(
                    f"{name}: commit conflict: a concurrent writer committed run key {spec.run_key}; "
                    "this write adds nothing",
                    flush=True,
                )
                skipped = True
                break
            print(f"{name}: commit conflict with a concurrent writer, attempt {attempt + 1}", flush=True)
    tbl = catalog.load_table(name)
    snap = find_committed(tbl, spec.run_key)
    if snap is None:
        raise StageError(f"wrote {name} but found no snapshot carrying run key {spec.run_key}")
    return _done(name, snap, skipped)


def _write(
    spec: StageSpec, ds: Any, name: str, props: dict[str, str], schema: Any = None, mode: str = "append"
) -> None:
    """``write_iceberg``, with the run-key check on the very snapshot the commit is based on.

    Ray's Iceberg sink loads the table when the write starts and commits against that base
    (pyiceberg asserts that ``main`` has not moved). Checking the run key on that same base makes
    "check, then write" atomic: a concurrent commit after the check fails our commit instead of
    duplicating rows.
    """
    from functools import partial

    from ray.data import SaveMode

    from ray_operators.jobs.iceberg_sink import guarded_sink_class

    kwargs: dict[str, Any] = {}
    if mode == "overwrite":
        kwargs["mode"] = SaveMode.OVERWRITE
        if spec.slice_filter:
            from ray.data.expressions import col

            column, value = spec.slice_filter["column"], spec.slice_filter["value"]
            kwargs["overwrite_filter"] = col(column) == value
    elif mode == "upsert":
        kwargs["mode"] = SaveMode.UPSERT
        kwargs["upsert_kwargs"] = {"join_cols": spec.keys}
    check = None if schema is not None else partial(_check_block, mode=mode, keys=list(spec.keys), name=name)
    sink = guarded_sink_class()(
        name,
        catalog_kwargs=spec.catalog_kwargs(),
        snapshot_properties=props,
        run_key=spec.run_key,
        is_committed=find_committed,
        evolve_schema=schema,
        check_block=check,
        **kwargs,
    )
    try:
        with phase("execute: write"):
            ds.write_datasink(sink)
    except Exception as err:
        if _caused_by(err, AlreadyCommitted):
            raise AlreadyCommitted(spec.run_key) from None
        if (mismatch := _cause(err, StageError)) is not None:
            raise StageError(str(mismatch)) from None
        raise


def _check_block(table_schema: Any, block_schema: Any, *, mode: str, keys: list[str], name: str) -> None:
    check_schema(table_schema, block_schema, mode, keys, name)


def _commit_empty(spec: StageSpec, tbl: Any, props: dict[str, str], mode: str) -> None:
    import pyarrow as pa

    empty = pa.Table.from_pylist([], schema=_arrow_schema(tbl))
    if mode == "overwrite" and spec.slice_filter:
        tbl.overwrite(empty, overwrite_filter=_slice_expression(spec.slice_filter), snapshot_properties=props)
    elif mode == "overwrite":
        tbl.overwrite(empty, snapshot_properties=props)
    else:
        tbl.append(empty, snapshot_properties=props)


def _cause(err: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        if isinstance(node, kind):
            return node
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return None


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    return _cause(err, kind) is not None


def _is_commit_conflict(err: BaseException) -> bool:
    from pyiceberg.exceptions import CommitFailedException

    # Ray retries a failed commit call when the message has a substring of its transient errors
    # (a 19-digit snapshot id may contain "500"); pyiceberg then refuses the spent transaction.
    text = str(err)
    return (
        _caused_by(err, CommitFailedException)
        or "CommitFailedException" in text
        or "failed to commit and cannot be reused" in text
    )


class _Conform:
    """Select and cast a block's columns to a target pyarrow schema."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        columns = []
        for f in self.schema:
            column = (
                batch.column(f.name) if f.name in batch.column_names else pa.nulls(batch.num_rows, f.type)
            )
            columns.append(column.cast(f.type))
        return pa.Table.from_arrays(columns, schema=self.schema)


def _added_records(snap: Any) -> int:
    # pyiceberg's Summary.get ignores its default: an empty commit has no added-records at all.
    return int(snap.summary.get("added-records") or 0) if snap.summary is not None else 0


def _known_schema(ds: Any) -> Any:
    """The dataset's schema when Ray knows it without executing anything, else None."""
    schema = ds.schema(fetch_if_missing=False)
    return getattr(schema, "base_schema", None) if schema is not None else None


def _arrow_schema(tbl: Any):
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    return schema_to_pyarrow(tbl.schema())


def _slice_expression(slice_filter: dict[str, Any]):
    from pyiceberg.expressions import EqualTo

    # EqualTo(term, literal): its constructor, not the pydantic fields (term, value) its stubs show.
    equal_to: Any = EqualTo
    return equal_to(slice_filter["column"], slice_filter["value"])


def ensure_table(spec: StageSpec, name: str, schema: Any, properties: dict[str, str] | None = None):
    """Create ``name`` with ``schema`` (a pyarrow schema) when missing; return the table."""
    catalog = spec.load_catalog()
    namespace = name.rpartition(".")[0]
    catalog.create_namespace_if_not_exists(namespace)
    return catalog.create_table_if_not_exists(name, schema=schema, properties=properties or {})


def commit_rows_exactly_once(
    spec: StageSpec,
    build: Any,
    *,
    table: str | None = None,
    extra_properties: dict[str, str] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Append a few rows computed *from the commit's base* (a version number, a sequence), once per
    run key, under the same optimistic-concurrency rule as :func:`commit_exactly_once`.

    ``build(table) -> (pyarrow.Table, extra summary properties)`` is called on the loaded table;
    the append asserts that the branch has not moved since, and a conflict rebuilds on the new
    head (so two concurrent runs get two different versions, never the same one twice).

    Returns ``(result, rows)``: the committed snapshot's facts, and the rows as committed (the
    earlier commit's rows when the run key was already on the branch).
    """
    name = table or spec.output_table
    catalog = spec.load_catalog()
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        tbl = catalog.load_table(name)
        done = find_committed(tbl, spec.run_key)
        if done is not None:
            return _done(name, done, True), _rows_of(tbl, done, spec.run_key)
        rows, props = build(tbl)
        lineage = {**spec.lineage_properties(), **_rolled_back(tbl, spec.run_key)}
        try:
            without_commit_rebase(tbl).append(
                rows, snapshot_properties={**lineage, **(extra_properties or {}), **props}
            )
        except Exception as err:
            if not _is_commit_conflict(err) or attempt == COMMIT_ATTEMPTS:
                raise
            print(f"{name}: commit conflict with a concurrent writer, attempt {attempt + 1}", flush=True)
            continue
        tbl = catalog.load_table(name)
        snap = find_committed(tbl, spec.run_key)
        if snap is None:
            raise StageError(f"wrote {name} but found no snapshot carrying run key {spec.run_key}")
        return _done(name, snap, False), rows.to_pylist()
    raise StageError(f"{name}: no commit after {COMMIT_ATTEMPTS} attempts")  # unreachable


def _rows_of(tbl: Any, snap: Any, run_key: str) -> list[dict[str, Any]]:
    """The rows a commit added that carry ``run_key`` in their ``run_key`` column, if it has one."""
    rows = tbl.scan(snapshot_id=snap.snapshot_id).to_arrow().to_pylist()
    return [r for r in rows if r.get("run_key", run_key) == run_key]
