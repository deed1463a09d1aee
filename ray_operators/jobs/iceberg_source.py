"""The one subclass of Ray's ``IcebergDatasource``: read what append snapshots added, through
Iceberg's own scan planning.

Each ``(from_exclusive, to_inclusive]`` range is planned with pyiceberg's
``incremental_append_scan`` (only the data files those appends added, pruned by the row filter's
metrics), and the files are read by Ray's Iceberg read tasks with the table's FileIO (the catalog's
S3 endpoint and credentials) and Iceberg's field-id projection onto the table's current schema: a
column added since is read as nulls, a renamed one by its new name.

It relies on ``IcebergDatasource``'s ``plan_files`` (a cached property), ``_plan_files``,
``_get_data_scan``, ``_get_combined_filter`` and ``_get_data_columns``, pinned by
``tests/unit/ray_operators/jobs/test_iceberg_source.py``.
"""

from __future__ import annotations

from typing import Any


def appends_source_class():
    """``IcebergAppendsDatasource``, built on first use (this module is importable without Ray)."""
    from ray.data._internal.datasource.iceberg_datasource import IcebergDatasource

    class IcebergAppendsDatasource(IcebergDatasource):
        """The data files the append snapshots of ``snapshot_ranges`` added.

        :param snapshot_ranges: ``[(from_exclusive, to_inclusive), ...]``; callers check that every
            snapshot in them is an append (pyiceberg's incremental scan skips the others silently).
        """

        def __init__(self, table_identifier: str, *, snapshot_ranges: list[tuple[Any, int]], **kwargs: Any):
            super().__init__(table_identifier, **kwargs)
            if not snapshot_ranges:
                raise ValueError("IcebergAppendsDatasource needs at least one snapshot range")
            self._snapshot_ranges = [(lo, hi) for lo, hi in snapshot_ranges]

        def _scan(self, lo: Any, hi: int) -> Any:
            columns = self._get_data_columns()
            return self.table.incremental_append_scan(
                from_snapshot_id_exclusive=lo,
                to_snapshot_id_inclusive=hi,
                row_filter=self._get_combined_filter(),
                selected_fields=tuple(columns) if columns else ("*",),
            )

        def _get_data_scan(self) -> Any:
            # Only its projection (the table's current schema) and field ids are used from here.
            return self._scan(*self._snapshot_ranges[-1])

        @property
        def plan_files(self) -> list[Any]:
            planned: list[Any] | None = self._plan_files
            if planned is None:
                planned = []
                for lo, hi in self._snapshot_ranges:
                    planned += list(self._scan(lo, hi).plan_files())
                self._plan_files = planned  # type: ignore[assignment]  # Ray types it None until planned
            return planned

    return IcebergAppendsDatasource
