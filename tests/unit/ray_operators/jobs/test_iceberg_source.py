"""Pins what our subclass of Ray's private Iceberg datasource relies on, so an upgrade that changes
it fails here, loudly."""

from __future__ import annotations

import inspect


def test_iceberg_datasource_members_the_appends_source_uses():
    from ray.data._internal.datasource.iceberg_datasource import IcebergDatasource

    assert isinstance(inspect.getattr_static(IcebergDatasource, "plan_files"), property)
    for name in ("_get_data_scan", "_get_combined_filter", "_get_data_columns", "get_read_tasks"):
        assert callable(getattr(IcebergDatasource, name)), name
    assert "self._plan_files = None" in inspect.getsource(IcebergDatasource.__init__)
    # Read tasks take the projection and field ids from _get_data_scan() and files from plan_files.
    tasks = inspect.getsource(IcebergDatasource.get_read_tasks)
    assert "self._get_data_scan()" in tasks and "self.plan_files" in tasks
