"""The snapshot ancestry walk and delta_since on synthetic metadata: the cases a real catalog makes
slow or awkward to stage."""

from __future__ import annotations

import pytest

from ray_operators.iceberg_snapshots import (
    EMPTY,
    Cursor,
    SnapshotFilter,
    SnapshotLineageError,
    ancestors,
    appends_between,
    as_of,
    delta_since,
)
from tests.helpers.snapshots import metadata, snap

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


def test_ancestors_and_as_of_follow_the_branch_not_the_metadata_list():
    s1, s2, s3, s4 = snap(11, None, 1), snap(22, 11, 2), snap(33, 22, 3), snap(44, 11, 4)
    meta = metadata([s1, s2, s3, s4], 44)  # rolled back to 11, then 44 appended
    assert [s.snapshot_id for s in ancestors(meta)] == [44, 11]
    assert as_of(meta, 3500).snapshot_id == 11  # 33 was committed by then, but is off the branch
    assert as_of(meta, 500) is None
    assert as_of(meta, 4000).snapshot_id == 44


def test_appends_between_is_oldest_first_and_refuses_non_appends_and_strangers():
    s1, s2, s3 = snap(11, None, 1), snap(22, 11, 2), snap(33, 22, 3)
    meta = metadata([s1, s2, s3], 33)
    assert [s.snapshot_id for s in appends_between(meta, 11, 33)] == [22, 33]
    assert [s.snapshot_id for s in appends_between(meta, None, 22)] == [11, 22]
    assert appends_between(meta, 33, 33) == []
    with pytest.raises(SnapshotLineageError, match="44 is not an ancestor of 33 in db.t"):
        appends_between(meta, 44, 33, table="db.t")
    with pytest.raises(SnapshotLineageError, match="99 is not in db.t"):
        appends_between(meta, None, 99, table="db.t")
    overwrite = snap(44, 33, 4, op="overwrite")
    with pytest.raises(SnapshotLineageError, match="snapshot 44 of db.t is a overwrite"):
        appends_between(metadata([s1, s2, s3, overwrite], 44), 22, 44, table="db.t")
