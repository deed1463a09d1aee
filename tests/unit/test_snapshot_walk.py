"""delta_since on synthetic metadata: the cases a real catalog makes slow or awkward to stage."""

from __future__ import annotations

from types import SimpleNamespace

from ray_operators.iceberg_snapshots import EMPTY, Cursor, SnapshotFilter, delta_since
from ray_operators.jobs.lakehouse import find_committed, secret_problem


def snap(sid, parent, seq, op="append", **props):
    summary = SimpleNamespace(
        operation=SimpleNamespace(value=op), additional_properties={"added-records": "1", **props}
    )
    summary.get = lambda key, default=None: summary.additional_properties.get(key, default)
    return SimpleNamespace(
        snapshot_id=sid,
        parent_snapshot_id=parent,
        sequence_number=seq,
        timestamp_ms=1000 * seq,
        summary=summary,
    )


def metadata(snaps, head):
    refs = {"main": SimpleNamespace(snapshot_id=head)} if head is not None else {}
    return SimpleNamespace(snapshots=snaps, refs=refs)


ALL = SnapshotFilter()


def test_commits_after_a_rollback_are_reported_with_it():
    s1, s2, s3 = snap(11, None, 1), snap(22, 11, 2), snap(33, 22, 3)
    s4 = snap(44, 11, 4)  # main rolled back to 11, then a new append
    delta = delta_since(metadata([s1, s2, s3, s4], 44), "main", Cursor(33, 3, 3000), ALL)
    assert delta.rollback
    assert [s["snapshot_id"] for s in delta.snapshots] == [44]
    pure = delta_since(metadata([s1, s2, s3], 11), "main", Cursor(33, 3, 3000), ALL)
    assert pure.rollback and pure.snapshots == [] and pure.head.snapshot_id == 11


def test_expired_cursor_snapshot_with_known_ordering_is_not_a_rollback():
    s3, s4, s5 = snap(33, 22, 3), snap(44, 33, 4), snap(55, 44, 5)  # 11 and 22 expired
    delta = delta_since(metadata([s3, s4, s5], 55), "main", Cursor(22, 2, 2000), ALL)
    assert not delta.rollback and delta.history_gap
    assert [s["snapshot_id"] for s in delta.snapshots] == [33, 44, 55]


def test_missing_branch_keeps_the_cursor_so_nothing_is_replayed_when_it_returns():
    s1, s2 = snap(11, None, 1), snap(22, 11, 2)
    gone = delta_since(metadata([s1, s2], None), "main", Cursor(22, 2, 2000), ALL)
    assert gone.head == Cursor(22, 2, 2000) and not gone.changed and not gone.rollback
    back = delta_since(metadata([s1, s2], 22), "main", gone.head, ALL)
    assert back.snapshots == [] and not back.rollback


def test_never_compares_ids_and_orders_by_chain():
    # Random ids: a larger id can be older.
    s1, s2, s3 = snap(900, None, 1), snap(5, 900, 2), snap(70, 5, 3)
    delta = delta_since(metadata([s3, s1, s2], 70), "main", Cursor(900, 1, 1000), ALL)
    assert [s["snapshot_id"] for s in delta.snapshots] == [5, 70]
    assert [
        s["snapshot_id"] for s in delta_since(metadata([s1, s2, s3], 70), "main", EMPTY, ALL).snapshots
    ] == [900, 5, 70]


def test_find_committed_returns_the_newest_snapshot_with_the_run_key():
    delete = snap(1, None, 1, op="delete", **{"lakehouse.run-key": "k"})
    append = snap(2, 1, 2, **{"lakehouse.run-key": "k"})
    table = SimpleNamespace(metadata=SimpleNamespace(snapshots=[delete, append]))
    assert find_committed(table, "k").snapshot_id == 2
    assert find_committed(table, "other") is None


def test_secrets_are_recognised_by_name_and_in_uris():
    assert secret_problem("s3.secret-access-key", "x")
    assert secret_problem("adls.account-key", "x")
    assert secret_problem("header.Authorization", "Bearer x")
    assert "password" in secret_problem("uri", "postgresql://user:pw@db/catalog")
    assert secret_problem("uri", "sqlite:////tmp/catalog.db") is None
    assert secret_problem("warehouse", "s3://bucket/wh") is None
