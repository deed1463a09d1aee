"""The stage contract every lakehouse job shares: one way to read, one way to write.

Runs on the Ray cluster and imports no Airflow.

- :class:`StageSpec` is the JSON a stage operator sends to the job.
- :func:`read_pinned` reads an input pinned to a snapshot id, or only what a snapshot range
  appended: never "whatever is current".
- :func:`commit_exactly_once` writes with lineage in the snapshot summary, and writes nothing when
  the output table already holds a snapshot carrying this run key.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ray_operators.jobs.result import SUBMISSION_ID_ENV

#: Snapshot summary keys that carry lineage and identity.
RUN_KEY = "lakehouse.run-key"
DAG_ID = "lakehouse.dag-id"
RUN_ID = "lakehouse.run-id"
TASK_ID = "lakehouse.task-id"
SUBMISSION_ID = "lakehouse.ray-submission-id"
STAGE = "lakehouse.stage"
INPUT_PREFIX = "lakehouse.input."

#: Catalog property names that look like secrets never travel in a spec (the dashboard shows it).
SECRET_MARKERS = (
    "secret",
    "password",
    "token",
    "credential",
    "session",
    "access-key",
    "account-key",
    "private",
    "connection-string",
    "header.",
    "sas",
)


def secret_problem(name: str, value: str) -> str | None:
    """Why a catalog property must not travel in a spec, or None when it may."""
    if any(marker in name.lower() for marker in SECRET_MARKERS):
        return f"catalog property {name!r} looks like a secret"
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(value))
    except ValueError:
        return None
    if parts.password:
        return f"catalog property {name!r} is a URI with a password in it"
    return None


class StageError(RuntimeError):
    """A stage cannot run as specified (bad spec, schema mismatch...): fails before any write."""


@dataclass
class TableInput:
    """An input table, pinned: one snapshot, the appends in ``(from, to]``, or the data each of a
    list of append snapshots added (``snapshot_ids``: a sensor's or an asset event's snapshots, or
    the ones a user asked to reprocess)."""

    table: str
    snapshot_id: int | None = None
    from_snapshot_id: int | None = None
    to_snapshot_id: int | None = None
    columns: list[str] | None = None
    row_filter: str | None = None
    snapshot_ids: list[int] | None = None

    @property
    def is_range(self) -> bool:
        return self.to_snapshot_id is not None

    @property
    def is_list(self) -> bool:
        return self.snapshot_ids is not None

    def lineage(self) -> str:
        if self.is_list:
            return "+".join(str(s) for s in self.snapshot_ids or [])
        if self.is_range:
            return f"{self.from_snapshot_id}..{self.to_snapshot_id}"
        return str(self.snapshot_id)

    def identity(self) -> list[int]:
        """The snapshot ids this input pins (for run keys)."""
        if self.is_list:
            return list(self.snapshot_ids or [])
        return [s for s in (self.to_snapshot_id or self.snapshot_id,) if s is not None]


@dataclass
class StageSpec:
    """What a stage job needs: catalog, pinned inputs, output, identity, parameters."""

    stage: str
    catalog_name: str
    catalog_properties: dict[str, str]
    output_table: str
    mode: str = "append"
    inputs: list[TableInput] = field(default_factory=list)
    raw_paths: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    slice_filter: dict[str, Any] | None = None
    run: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        key = self.run.get("run_key")
        if not key:
            raise StageError("stage spec has no run.run_key: exactly-once writes need one")
        return key

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "inputs"}
        data["inputs"] = [i.__dict__ for i in self.inputs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageSpec:
        data = dict(data)
        inputs = [TableInput(**i) for i in data.pop("inputs", [])]
        spec = cls(inputs=inputs, **data)
        if spec.mode not in ("append", "overwrite", "upsert"):
            raise StageError(f"output mode must be append, overwrite or upsert, got {spec.mode!r}")
        if spec.mode == "upsert" and not spec.keys:
            raise StageError("upsert needs keys")
        for name, value in spec.catalog_properties.items():
            if problem := secret_problem(name, value):
                raise StageError(
                    f"{problem}; secrets must come from the cluster's own environment, not the stage spec "
                    "(the Ray dashboard shows it)"
                )
        return spec

    def encode(self) -> str:
        """URL-safe base64 JSON, for a job entrypoint argument (key order kept: a declared schema
        lists its columns in order)."""
        return base64.urlsafe_b64encode(json.dumps(self.to_json()).encode()).decode()

    @classmethod
    def decode(cls, text: str) -> StageSpec:
        return cls.from_json(json.loads(base64.urlsafe_b64decode(text.encode())))

    def catalog_kwargs(self) -> dict[str, str]:
        # Table identity in a SqlCatalog includes the catalog name: pass it explicitly, always.
        return {"name": self.catalog_name, **self.catalog_properties}

    def load_catalog(self):
        from pyiceberg.catalog import load_catalog

        return load_catalog(self.catalog_name, **self.catalog_properties)

    def lineage_properties(self) -> dict[str, str]:
        props = {
            RUN_KEY: self.run_key,
            DAG_ID: self.run.get("dag_id", ""),
            RUN_ID: self.run.get("run_id", ""),
            TASK_ID: self.run.get("task_id", ""),
            SUBMISSION_ID: os.environ.get(SUBMISSION_ID_ENV, self.run.get("submission_id", "")),
            STAGE: self.stage,
        }
        for item in self.inputs:
            props[INPUT_PREFIX + item.table] = item.lineage()
        if self.raw_paths:
            props[INPUT_PREFIX + "raw"] = ",".join(self.raw_paths)[:1000]
        return props


# ---- reads -------------------------------------------------------------------------------


def read_pinned(spec: StageSpec, item: TableInput, *, num_blocks: int | None = None):
    """A Ray Dataset of one input, pinned to a snapshot or limited to a snapshot range's appends.

    ``num_blocks`` overrides Ray Data's read parallelism (``override_num_blocks``); None keeps its
    default.
    """
    import ray

    blocks: dict[str, Any] = {"override_num_blocks": num_blocks} if num_blocks else {}

    catalog = spec.load_catalog()
    table = catalog.load_table(item.table)
    if item.is_list or item.is_range:
        if item.is_list:
            files = []
            for snapshot_id in item.snapshot_ids or []:
                snap = table.metadata.snapshot_by_id(int(snapshot_id))
                if snap is None:
                    raise StageError(
                        f"snapshot {snapshot_id} is not in {item.table} (expired, or from another table?)"
                    )
                files += appended_files(table, snap.parent_snapshot_id, snap.snapshot_id)
        else:
            files = appended_files(table, item.from_snapshot_id, item.to_snapshot_id)
        if not files:
            return ray.data.from_items([]), 0
        ds = ray.data.read_parquet(files, columns=item.columns, **blocks)
        if item.row_filter:
            raise StageError("row_filter is not supported with snapshot ranges")
        return ds, len(files)
    if item.snapshot_id is None:
        raise StageError(f"input {item.table} has neither snapshot_id nor a snapshot range: reads are pinned")
    if table.metadata.snapshot_by_id(item.snapshot_id) is None:
        raise StageError(
            f"snapshot {item.snapshot_id} is not in {item.table} (expired, or from another table?)"
        )
    kwargs: dict[str, Any] = {}
    if item.row_filter:
        from pyiceberg.expressions.parser import parse

        try:
            kwargs["row_filter"] = parse(item.row_filter)  # Ray hands strings to pyiceberg unparsed
        except Exception as err:
            raise StageError(
                f"input {item.table}: row_filter {item.row_filter!r} does not parse: {err}"
            ) from None
    if item.columns:
        kwargs["selected_fields"] = tuple(item.columns)
    ds = ray.data.read_iceberg(
        table_identifier=item.table,
        catalog_kwargs=spec.catalog_kwargs(),
        snapshot_id=item.snapshot_id,
        **kwargs,
        **blocks,
    )
    return ds, None


def appended_files(table: Any, from_exclusive: int | None, to_inclusive: int) -> list[str]:
    """Data files added by the append snapshots in ``(from_exclusive, to_inclusive]``.

    Walks the parent chain back from ``to_inclusive``; a non-append snapshot in the range (an
    overwrite or delete changed existing rows) cannot be read incrementally and is an error.
    """
    from pyiceberg.manifest import ManifestEntryStatus

    chain = []
    node = table.metadata.snapshot_by_id(to_inclusive)
    if node is None:
        raise StageError(f"snapshot {to_inclusive} is not in {_name(table)}")
    while node is not None and node.snapshot_id != from_exclusive:
        chain.append(node)
        node = table.metadata.snapshot_by_id(node.parent_snapshot_id) if node.parent_snapshot_id else None
    if from_exclusive is not None and node is None:
        raise StageError(f"snapshot {from_exclusive} is not an ancestor of {to_inclusive} in {_name(table)}")
    files: list[str] = []
    for snap in reversed(chain):
        operation = snap.summary.operation.value if snap.summary else "append"
        if operation != "append":
            raise StageError(
                f"snapshot {snap.snapshot_id} of {_name(table)} is a {operation}: only appends can be read "
                "incrementally; read a pinned snapshot instead"
            )
        for manifest in snap.manifests(table.io):
            if manifest.added_snapshot_id != snap.snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snap.snapshot_id:
                    files.append(entry.data_file.file_path)
    return files


# ---- writes ------------------------------------------------------------------------------


def find_committed(table: Any, run_key: str) -> Any | None:
    """The newest snapshot of ``table`` that carries ``run_key``, if any (the whole history is checked).

    Newest, because an overwrite commits a delete and then an append under the same key: the
    finished state is the last one.
    """
    for snap in reversed(table.metadata.snapshots):
        if snap.summary is not None and snap.summary.get(RUN_KEY) == run_key:
            return snap
    return None


def validate_schema(table: Any, schema: Any, mode: str, keys: list[str]) -> None:
    """Fail before writing when the data does not fit the table; name the columns."""
    table_fields = {f.name: f for f in table.schema().fields}
    data_fields = {f.name: f for f in schema}
    missing = sorted(name for name, f in table_fields.items() if f.required and name not in data_fields)
    extra = sorted(set(data_fields) - set(table_fields))
    problems = []
    if missing:
        problems.append(f"missing required column(s) {missing}")
    if extra:
        problems.append(f"column(s) {extra} are not in the table")
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    expected = schema_to_pyarrow(table.schema())
    for name, data_field in data_fields.items():
        if name in table_fields:
            want = expected.field(name).type
            if not _compatible(data_field.type, want):
                problems.append(f"column {name!r} is {data_field.type}, the table has {want}")
    missing_keys = sorted(set(keys) - set(data_fields))
    if mode == "upsert" and missing_keys:
        problems.append(f"upsert key column(s) {missing_keys} are not in the data")
    if problems:
        raise StageError(f"schema mismatch writing {_name(table)}: " + "; ".join(problems))


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


def commit_exactly_once(
    spec: StageSpec,
    ds: Any,
    *,
    table: str | None = None,
    schema: Any = None,
    extra_properties: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``ds`` to the output table once per run key; return the committed snapshot's facts.

    An empty dataset still commits (an empty snapshot carrying the run key), so a re-run can tell
    "done, nothing to write" from "never ran".
    """

    name = table or spec.output_table
    catalog = spec.load_catalog()
    tbl = catalog.load_table(name)
    done = find_committed(tbl, spec.run_key)
    if done is not None:
        return {
            "table": name,
            "snapshot_id": done.snapshot_id,
            "rows": _added_records(done),
            "skipped": True,
        }
    props = {**spec.lineage_properties(), **(extra_properties or {})}
    if ds is not None:
        # The schema check runs before any file is written; the data itself is computed once, by
        # the write (no count() first: that would run the whole pipeline twice).
        data_schema = schema if schema is not None else _schema_of(ds)
        if data_schema is not None:
            validate_schema(tbl, data_schema, spec.mode, spec.keys)
        if schema is not None:
            # Conform every block to the declared schema (column order, units, time zones).
            ds = ds.map_batches(_Conform(schema), batch_format="pyarrow")
    skipped = False
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            if ds is not None:
                _write(spec, ds, name, props, data_schema)
                tbl = catalog.load_table(name)
            if find_committed(tbl, spec.run_key) is None:
                # Nothing to write (Ray commits nothing for an empty dataset): record completion
                # anyway. The check and the commit share one base: pyiceberg asserts it.
                _commit_empty(spec, tbl, props)
            break
        except _AlreadyCommitted:
            skipped = True
            break
        except Exception as err:
            if not _is_commit_conflict(err) or attempt == COMMIT_ATTEMPTS:
                raise
            # Another writer committed since our base snapshot: if it wrote this run key, the run
            # is done (our data files stay unreferenced); otherwise write again on the new head.
            tbl = catalog.load_table(name)
            if find_committed(tbl, spec.run_key) is not None:
                skipped = True
                break
            print(f"{name}: commit conflict with a concurrent writer, attempt {attempt + 1}", flush=True)
    tbl = catalog.load_table(name)
    snap = find_committed(tbl, spec.run_key)
    if snap is None:
        raise StageError(f"wrote {name} but found no snapshot carrying run key {spec.run_key}")
    return {"table": name, "snapshot_id": snap.snapshot_id, "rows": _added_records(snap), "skipped": skipped}


#: Writes retried after a commit conflict with an unrelated concurrent writer.
COMMIT_ATTEMPTS = 4


class _AlreadyCommitted(Exception):
    """The run key appeared on the write's base snapshot: nothing was written."""


def _write(spec: StageSpec, ds: Any, name: str, props: dict[str, str], schema: Any = None) -> None:
    """``write_iceberg``, with the run-key check on the very snapshot the commit is based on.

    Ray's Iceberg sink loads the table when the write starts and commits against that base
    (pyiceberg asserts that ``main`` has not moved). Checking the run key on that same base makes
    "check, then write" atomic: a concurrent commit after the check fails our commit instead of
    duplicating rows.

    The table's schema is evolved (if at all) from ``schema``, the data's schema checked by
    :func:`validate_schema`, not from what Ray hands ``on_write_start``: when Ray fuses the write
    with the maps before it, that is the schema of the fused operator's *input* (in curate: the
    parsed-line records, whose all-null ``reason`` column Iceberg v2 cannot even store).
    """
    from ray.data import SaveMode
    from ray.data._internal.datasource.iceberg_datasink import IcebergDatasink

    run_key = spec.run_key

    class RunKeyGuardedSink(IcebergDatasink):
        def on_write_start(self, _fused_input_schema: Any = None) -> None:
            super().on_write_start(schema)
            if find_committed(self._table, run_key) is not None:
                raise _AlreadyCommitted(run_key)

    kwargs: dict[str, Any] = {}
    if spec.mode == "overwrite":
        kwargs["mode"] = SaveMode.OVERWRITE
        if spec.slice_filter:
            from ray.data.expressions import col

            column, value = spec.slice_filter["column"], spec.slice_filter["value"]
            kwargs["overwrite_filter"] = col(column) == value
    elif spec.mode == "upsert":
        kwargs["mode"] = SaveMode.UPSERT
        kwargs["upsert_kwargs"] = {"join_cols": spec.keys}
    sink = RunKeyGuardedSink(name, catalog_kwargs=spec.catalog_kwargs(), snapshot_properties=props, **kwargs)
    try:
        ds.write_datasink(sink)
    except Exception as err:
        if _caused_by(err, _AlreadyCommitted):
            raise _AlreadyCommitted(run_key) from None
        raise


def _commit_empty(spec: StageSpec, tbl: Any, props: dict[str, str]) -> None:
    import pyarrow as pa

    empty = pa.Table.from_pylist([], schema=_arrow_schema(tbl))
    if spec.mode == "overwrite" and spec.slice_filter:
        tbl.overwrite(empty, overwrite_filter=_slice_expression(spec.slice_filter), snapshot_properties=props)
    elif spec.mode == "overwrite":
        tbl.overwrite(empty, snapshot_properties=props)
    else:
        tbl.append(empty, snapshot_properties=props)


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        if isinstance(node, kind):
            return True
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return False


def _is_commit_conflict(err: BaseException) -> bool:
    from pyiceberg.exceptions import CommitFailedException

    return _caused_by(err, CommitFailedException) or "CommitFailedException" in str(err)


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


def _schema_of(ds: Any) -> Any:
    schema = ds.schema()
    return getattr(schema, "base_schema", None) if schema is not None else None


def _arrow_schema(tbl: Any):
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    return schema_to_pyarrow(tbl.schema())


def _slice_expression(slice_filter: dict[str, Any]):
    from pyiceberg.expressions import EqualTo

    return EqualTo(slice_filter["column"], slice_filter["value"])


def ensure_table(spec: StageSpec, name: str, schema: Any, properties: dict[str, str] | None = None):
    """Create ``name`` with ``schema`` (a pyarrow schema) when missing; return the table."""
    catalog = spec.load_catalog()
    namespace = name.rpartition(".")[0]
    catalog.create_namespace_if_not_exists(namespace)
    return catalog.create_table_if_not_exists(name, schema=schema, properties=properties or {})
