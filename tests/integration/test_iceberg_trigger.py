"""IcebergSnapshotTrigger against a real SqlCatalog, with commits from another process."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest

from ray_operators.triggers.iceberg import IcebergSnapshotTrigger, cursor_key
from tests.helpers.iceberg_fixtures import BackgroundTrigger, CatalogTraffic, MemoryStateStore

TABLE = "db.events"


def _trigger(env, **kwargs) -> IcebergSnapshotTrigger:
    kwargs.setdefault("table", TABLE)
    kwargs.setdefault("poll_interval", 0.2)
    return IcebergSnapshotTrigger(iceberg_conn_id=env.conn_id, **kwargs)


def test_three_commits_between_two_polls_are_three_snapshots_in_one_event_in_order(iceberg):
    first = iceberg.commit(TABLE, "append", "1")[0]

    async def scenario():
        trigger = _trigger(iceberg, poll_interval=4)
        async with BackgroundTrigger(trigger) as bg:
            await bg.polls_reach(1)
            # Three snapshots in one catalog commit, so no poll can fall between them (three
            # separate commits from another process could straddle a poll on a slow machine).
            ids = await iceberg.acommit(TABLE, "append-at-once", "3")
            event = await bg.next_event(timeout=30)
            return ids, event, trigger

    ids, event, trigger = asyncio.run(scenario())
    assert event["kind"] == "snapshots"
    assert event["snapshot_ids"] == ids
    assert [s["snapshot_id"] for s in event["snapshots"]] == ids
    assert [s["parent_id"] for s in event["snapshots"]] == [first, ids[0], ids[1]]
    seqs = [s["sequence_number"] for s in event["snapshots"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert all(s["operation"] == "append" and s["added_records"] == 3 for s in event["snapshots"])
    assert event["previous_head"]["snapshot_id"] == first
    assert event["new_head"]["snapshot_id"] == ids[-1]
    assert json.loads(json.dumps(event)) == event
    # A fresh watcher did not fire for what was already there (emit_on_start=False).
    assert first not in event["snapshot_ids"]


def test_compaction_and_own_writes_are_skipped_but_passed(iceberg):
    iceberg.commit(TABLE, "append", "2")

    async def scenario():
        trigger = _trigger(iceberg, ignore_summary={"airflow_dag_id": "me"})
        async with BackgroundTrigger(trigger) as bg:
            await bg.polls_reach(1)
            await iceberg.acommit(TABLE, "compact")
            await iceberg.acommit(TABLE, "own-write", "airflow_dag_id=me")
            polls = trigger.polls
            await bg.polls_reach(polls + 3)
            assert bg.events.empty(), "compaction or own write fired an event"
            (new,) = await iceberg.acommit(TABLE, "append", "1")
            return new, await bg.next_event()

    new, event = asyncio.run(scenario())
    assert event["snapshot_ids"] == [new]
    assert event["snapshots"][0]["operation"] == "append"


def test_rollback_is_reported_as_rollback_not_new_data(iceberg):
    ids = iceberg.commit(TABLE, "append", "2")

    async def scenario():
        async with BackgroundTrigger(_trigger(iceberg)) as bg:
            await bg.polls_reach(1)
            back_to = await iceberg.acommit(TABLE, "rollback")
            return back_to, await bg.next_event()

    back_to, event = asyncio.run(scenario())
    assert back_to == ids[0]
    assert event["kind"] == "rollback"
    assert event["snapshots"] == []
    assert event["previous_head"]["snapshot_id"] == ids[1]
    assert event["new_head"]["snapshot_id"] == ids[0]


def test_missing_namespace_and_table_are_waited_for_then_reported(iceberg):
    async def scenario():
        trigger = _trigger(iceberg, table="later.table")
        async with BackgroundTrigger(trigger) as bg:
            await bg.polls_reach(3)
            assert bg.events.empty()
            await iceberg.acommit("later.table", "create")
            ids = await iceberg.acommit("later.table", "append", "2")
            return ids, await bg.events_reporting(len(ids))

    ids, events = asyncio.run(scenario())
    assert [i for e in events for i in e["snapshot_ids"]] == ids
    assert events[0]["previous_head"]["snapshot_id"] is None


def test_triggerer_restart_neither_replays_nor_skips(iceberg):
    iceberg.commit(TABLE, "append", "1")
    store = MemoryStateStore()

    async def scenario():
        first = _trigger(iceberg)
        first.asset_state_store = store
        async with BackgroundTrigger(first) as bg:
            await bg.polls_reach(1)
            before = await iceberg.acommit(TABLE, "append", "2")
            reported_before = [i for e in await bg.events_reporting(len(before)) for i in e["snapshot_ids"]]
            await bg.polls_reach(first.polls + 2)
        # The triggerer is down while two more commits land.
        during = await iceberg.acommit(TABLE, "append", "2")
        classpath, kwargs = first.serialize()
        module, name = classpath.rsplit(".", 1)
        second = getattr(importlib.import_module(module), name)(**kwargs)
        second.asset_state_store = store
        async with BackgroundTrigger(second) as bg:
            event_after = await bg.next_event()
            after = await iceberg.acommit(TABLE, "append", "1")
            event_last = await bg.next_event()
            # The cursor is saved one poll after its event (so a crash re-reports, never loses).
            await bg.polls_reach(second.polls + 2)
        return before, reported_before, during, event_after, after, event_last

    before, reported_before, during, event_after, after, event_last = asyncio.run(scenario())
    assert reported_before == before
    assert event_after["snapshot_ids"] == during  # no replay of `before`, no gap
    assert event_last["snapshot_ids"] == after
    assert store.data[cursor_key(TABLE, "main")]["snapshot_id"] == after[-1]


def test_emit_on_start_and_since_snapshot_id_report_existing_history(iceberg):
    ids = iceberg.commit(TABLE, "append", "3")

    async def first_event(**kwargs):
        async with BackgroundTrigger(_trigger(iceberg, **kwargs)) as bg:
            return await bg.next_event()

    assert asyncio.run(first_event(emit_on_start=True))["snapshot_ids"] == ids
    assert asyncio.run(first_event(since_snapshot_id=ids[0]))["snapshot_ids"] == ids[1:]


def test_a_deferred_sensors_trigger_holds_its_event_from_its_own_start(iceberg, monkeypatch):
    """The task's clock (``not_before``) ran out before the trigger started, as when recording the
    deferral took long on busy cores: the snapshot trigger still holds its first event for the
    whole hold from its own start (ray_operators/triggers/_resume.py; the Ray job trigger's case
    is in tests/unit/ray_operators/triggers/test__resume.py)."""
    import time

    from ray_operators.triggers import _resume

    ids = iceberg.commit(TABLE, "append", "2")
    hold = 7.0
    monkeypatch.setenv("AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS", str(hold))
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def recording(delay, *args, **kwargs):  # the hold, asked and not waited
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(_resume.asyncio, "sleep", recording)
    trigger = _trigger(iceberg, since_snapshot_id=ids[0], not_before=time.time() - 20)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["snapshot_ids"] == ids[1:]
    # Asked before the event was yielded: the whole hold, not the task's clock (20 s gone).
    assert [d for d in delays if d > 1] and hold - 1 < max(delays) <= hold, delays


def test_unchanged_polls_cost_one_catalog_query_and_no_metadata_read(iceberg):
    """Counted at the catalog (SQL statements on its sqlite database, metadata files parsed), not by
    the trigger's own counter."""
    iceberg.commit(TABLE, "append", "1")

    async def scenario():
        trigger = _trigger(iceberg, poll_interval=0.01)
        with CatalogTraffic(iceberg.root) as traffic:
            async with BackgroundTrigger(trigger) as bg:
                await bg.polls_reach(2)
                (statements, reads), polls = traffic.snapshot(), trigger.polls
                await bg.polls_reach(polls + 20)
                (statements_after, reads_after), polls_after = traffic.snapshot(), trigger.polls
        return reads, statements_after - statements, reads_after - reads, polls_after - polls

    loading_reads, extra_statements, extra_reads, extra_polls = asyncio.run(scenario())
    assert loading_reads >= 1  # the first poll loaded the table: the counter sees metadata reads
    assert extra_polls >= 20
    # One metadata-location probe per poll (the poll in flight at either end may count or not).
    assert extra_polls - 1 <= extra_statements <= extra_polls + 1
    assert extra_reads == 0


def test_bad_catalog_configuration_fails_with_a_clear_message(iceberg, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ICEBERG_BROKEN", json.dumps({"conn_type": "iceberg", "extra": {"type": "nope"}})
    )

    async def scenario():
        async with BackgroundTrigger(
            IcebergSnapshotTrigger(table=TABLE, iceberg_conn_id="iceberg_broken")
        ) as bg:
            await asyncio.wait_for(asyncio.shield(bg.task), 30)

    with pytest.raises(Exception, match="iceberg_broken") as err:
        asyncio.run(scenario())
    assert "Cannot open the Iceberg catalog" in str(err.value)


def test_bad_table_name_is_refused_at_construction():
    with pytest.raises(ValueError, match="namespace.table"):
        IcebergSnapshotTrigger(table="no_namespace")


def test_transient_errors_are_retried(iceberg, monkeypatch):
    from ray_operators import iceberg_catalog as hooks

    real_poll, failures = hooks.TableWatch.poll, {"left": 2}

    def flaky(self):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("catalog briefly unreachable")
        return real_poll(self)

    monkeypatch.setattr(hooks.TableWatch, "poll", flaky)
    monkeypatch.setattr("ray_operators.triggers.iceberg.MAX_BACKOFF_SECONDS", 0.05)

    async def scenario():
        async with BackgroundTrigger(_trigger(iceberg, poll_interval=0.01)) as bg:
            await bg.polls_reach(4)
            ids = await iceberg.acommit(TABLE, "append", "1")
            return ids, await bg.next_event()

    ids, event = asyncio.run(scenario())
    assert failures["left"] == 0
    assert event["snapshot_ids"] == ids


def test_serialize_round_trip_is_json_safe():
    trigger = IcebergSnapshotTrigger(
        table="a.b.t",
        iceberg_conn_id="c",
        branch="dev",
        poll_interval=5,
        operations=["append"],
        ignore_summary={"k": "v"},
        min_added_records=10,
        since_snapshot_id=123,
        emit_on_start=True,
    )
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, name = classpath.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name)(**kwargs).serialize() == (classpath, kwargs)
