"""Pins what our subclass of Ray's private Iceberg sink relies on, and the pyiceberg commit-retry
property we turn off, so an upgrade that changes them fails here, loudly."""

from __future__ import annotations

import inspect

import pytest


def test_iceberg_datasink_hooks_we_override():
    from ray.data._internal.datasource.iceberg_datasink import IcebergDatasink

    start = inspect.signature(IcebergDatasink.on_write_start)
    assert list(start.parameters) == ["self", "schema"] and start.parameters["schema"].default is None
    assert list(inspect.signature(IcebergDatasink.write).parameters) == ["self", "blocks", "ctx"]
    source = inspect.getsource(IcebergDatasink)
    # on_write_start loads the base into self._table; write tasks use self._table_metadata; the
    # commit (on_write_complete) builds its transaction on self._table.
    assert "self._table = " in source and "self._table_metadata = self._table.metadata" in source
    assert "txn = self._table.transaction()" in inspect.getsource(IcebergDatasink.on_write_complete)


def test_guarded_sink_builds_without_a_catalog_and_keeps_our_hooks():
    from ray_operators.jobs.iceberg_sink import guarded_sink_class

    sink = guarded_sink_class()(
        "db.t",
        catalog_kwargs={"name": "c", "type": "sql", "uri": "sqlite:///:memory:"},
        run_key="k",
        is_committed=lambda table, key: None,
    )
    assert sink._run_key == "k" and sink._table is None


def test_pyiceberg_rebases_a_conflicting_commit_unless_told_not_to():
    from pyiceberg.table import TableProperties, Transaction

    from ray_operators.jobs.iceberg_sink import COMMIT_NUM_RETRIES

    assert TableProperties.COMMIT_NUM_RETRIES == COMMIT_NUM_RETRIES
    commit = inspect.getsource(Transaction.commit_transaction)
    assert "self._table.metadata.properties" in commit and "COMMIT_NUM_RETRIES" in commit


def test_without_commit_rebase_changes_the_handle_not_the_table(tmp_path):
    import pyarrow as pa
    from pyiceberg.catalog import load_catalog

    from ray_operators.jobs.iceberg_sink import COMMIT_NUM_RETRIES, without_commit_rebase

    catalog = load_catalog("c", type="sql", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}")
    catalog.create_namespace("db")
    ours = catalog.create_table("db.t", schema=pa.schema([("id", pa.int64())]))
    other = catalog.load_table("db.t")
    other.append(pa.table({"id": [1]}))
    from pyiceberg.exceptions import CommitFailedException

    # pyiceberg alone would rebase our append onto `other`'s and land it; ours fails instead.
    with pytest.raises(CommitFailedException):
        without_commit_rebase(ours).append(pa.table({"id": [2]}))
    assert catalog.load_table("db.t").metadata.properties.get(COMMIT_NUM_RETRIES) is None
    assert catalog.load_table("db.t").scan().to_arrow()["id"].to_pylist() == [1]
