"""The one read path of every stage: an input pinned to a snapshot, or only what append snapshots
added, always through Iceberg (scan planning, FileIO, field-id projection). Never "whatever is
current". Runs on the Ray cluster and imports no Airflow."""

from __future__ import annotations

from typing import Any

from ray_operators.contract.spec import StageError, StageSpec, TableInput


def read_pinned(
    spec: StageSpec, item: TableInput, *, num_blocks: int | None = None, local_max_bytes: int | None = None
):
    """``(dataset, files)``: one input as a dataset, and for an incremental input the number of
    data files its appends added (None for a pinned snapshot).

    ``num_blocks`` overrides Ray Data's read parallelism (``override_num_blocks``); None keeps its
    default. When the planned data files total at most ``local_max_bytes`` (0 or None: never), the
    dataset is a :class:`~ray_operators.jobs.execution.LocalDataset` read by the same read tasks
    in the driver (see :mod:`ray_operators.jobs.execution`); otherwise a Ray Dataset, and the job's
    workers are started.
    """
    import ray

    from ray_operators.jobs import execution

    blocks: dict[str, Any] = {"override_num_blocks": num_blocks} if num_blocks else {}
    kwargs: dict[str, Any] = {}
    if item.row_filter:
        kwargs["row_filter"] = parse_row_filter(item)
    if item.columns:
        kwargs["selected_fields"] = tuple(item.columns)

    table = spec.load_catalog().load_table(item.table)
    files: int | None = None
    if item.is_list or item.is_range:
        ranges = append_ranges(table, item)
        from ray_operators.jobs.iceberg_source import appends_source_class

        source = appends_source_class()(
            item.table, snapshot_ranges=ranges, catalog_kwargs=spec.catalog_kwargs(), **kwargs
        )
        files = len(source.plan_files) if ranges else 0
        if not files:
            return (execution.LocalDataset(list) if local_max_bytes else ray.data.from_items([])), 0
    else:
        if item.snapshot_id is None:
            raise StageError(
                f"input {item.table} has neither snapshot_id nor a snapshot range: reads are pinned"
            )
        if table.metadata.snapshot_by_id(item.snapshot_id) is None:
            raise StageError(
                f"snapshot {item.snapshot_id} is not in {item.table} (expired, or from another table?)"
            )
        # What ray.data.read_iceberg builds, kept here so that its planned files can be sized.
        from ray.data._internal.datasource.iceberg_datasource import IcebergDatasource

        source = IcebergDatasource(
            table_identifier=item.table,
            snapshot_id=item.snapshot_id,
            catalog_kwargs=spec.catalog_kwargs(),
            **kwargs,
        )
    size = sum(int(task.file.file_size_in_bytes) for task in source.plan_files)
    if execution.runs_locally(size, local_max_bytes):
        print(
            f"{item.table}: {size:,} bytes of data files: read and processed in the job's driver", flush=True
        )
        return execution.read_in_driver(source), files
    execution.warm_workers()
    return ray.data.read_datasource(source, **blocks), files


def parse_row_filter(item: TableInput) -> Any:
    from pyiceberg.expressions.parser import parse

    assert item.row_filter is not None, "parse_row_filter is called for an input with a row_filter"
    try:
        return parse(item.row_filter)  # Ray hands strings to pyiceberg unparsed
    except Exception as err:
        raise StageError(
            f"input {item.table}: row_filter {item.row_filter!r} does not parse: {err}"
        ) from None


def append_ranges(table: Any, item: TableInput) -> list[tuple[int | None, int]]:
    """The ``(from_exclusive, to_inclusive]`` ranges an incremental input reads, each checked to be
    appends only on the snapshot's parent chain (see :func:`appends_between`)."""
    from ray_operators.iceberg_snapshots import SnapshotLineageError, appends_between

    name = item.table
    try:
        if item.is_list:
            ranges = []
            for snapshot_id in item.snapshot_ids or []:
                snap = table.metadata.snapshot_by_id(int(snapshot_id))
                if snap is None:
                    raise SnapshotLineageError(
                        f"snapshot {snapshot_id} is not in {name} (expired, or from another table?)"
                    )
                appends_between(table.metadata, snap.parent_snapshot_id, snap.snapshot_id, table=name)
                ranges.append((snap.parent_snapshot_id, snap.snapshot_id))
            return ranges
        assert item.to_snapshot_id is not None, "an incremental input is a list or a range"
        appends = appends_between(table.metadata, item.from_snapshot_id, int(item.to_snapshot_id), table=name)
        return [(item.from_snapshot_id, int(item.to_snapshot_id))] if appends else []
    except SnapshotLineageError as err:
        raise StageError(str(err)) from None


def appended_files(table: Any, from_exclusive: int | None, to_inclusive: int) -> list[str]:
    """Paths of the data files the appends in ``(from_exclusive, to_inclusive]`` added (planned by
    Iceberg: what an incremental read of that range reads)."""
    name = table.name()
    name = ".".join(name) if isinstance(name, tuple) else str(name)
    item = TableInput(table=name, from_snapshot_id=from_exclusive, to_snapshot_id=to_inclusive)
    paths: list[str] = []
    for lo, hi in append_ranges(table, item):
        scan = table.incremental_append_scan(from_snapshot_id_exclusive=lo, to_snapshot_id_inclusive=hi)
        paths += [task.file.file_path for task in scan.plan_files()]
    return paths
