"""A deferred task's trigger holds its event until ``not_before`` (ray_operators.triggers._resume):
Airflow 3.3 fails a task resumed before the scheduler saw its deferring worker exit."""

from __future__ import annotations

import asyncio
import time

import pytest

from ray_operators.triggers import _resume
from ray_operators.triggers.ray_job import RayJobTrigger


@pytest.fixture
def slept(monkeypatch):
    """The delays asked of asyncio.sleep (returning at once)."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def recording(delay, *args, **kwargs):
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(_resume.asyncio, "sleep", recording)
    return delays


#: The hold these tests configure (the suite runs with 0: see tests/conftest.py).
HOLD = 7.0


@pytest.fixture
def hold(monkeypatch):
    monkeypatch.setenv("AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS", str(HOLD))
    return HOLD


def _events_of_a_job_done_at_once(trigger: RayJobTrigger, monkeypatch) -> list:
    """Every event ``trigger.run()`` yields when its job is already done (no Ray cluster)."""

    async def done_at_once():
        return trigger._event("SUCCEEDED")

    monkeypatch.setattr(trigger, "_wait", done_at_once)

    async def events():
        return [event async for event in trigger.run()]

    return asyncio.run(events())


def test_the_hold_defaults_to_ten_seconds_and_is_configurable(monkeypatch):
    from ray_operators.airflow_conf import resume_hold_seconds

    monkeypatch.delenv("AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS", raising=False)
    assert resume_hold_seconds() == 10.0
    monkeypatch.setenv("AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS", "2.5")
    assert resume_hold_seconds() == 2.5
    before = time.time()
    assert before + 2.5 <= _resume.not_before_from_now() <= time.time() + 2.5
    monkeypatch.setenv("AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS", "-1")
    assert resume_hold_seconds() == 0.0


def test_hold_until_sleeps_only_for_what_is_left(slept):
    asyncio.run(_resume.hold_until(None))
    asyncio.run(_resume.hold_until(time.time() - 5))
    assert slept == []
    asyncio.run(_resume.hold_until(time.time() + 7))
    assert len(slept) == 1 and 6 < slept[0] <= 7


def test_the_ray_job_trigger_yields_its_event_no_sooner_than_not_before(slept, monkeypatch, hold):
    not_before = _resume.not_before_from_now()
    trigger = RayJobTrigger(submission_id="raysubmit_1", not_before=not_before)
    # Serialized with it: a triggerer restart keeps the deferral's clock (and holds from its own
    # start too: see the next test).
    assert trigger.serialize()[1]["not_before"] == not_before
    assert RayJobTrigger(**trigger.serialize()[1]).not_before == not_before

    (event,) = _events_of_a_job_done_at_once(trigger, monkeypatch)
    assert event.payload["status"] == "SUCCEEDED"
    assert len(slept) == 1 and hold - 1 < slept[0] <= hold


def test_the_deferring_sensor_sets_not_before_and_its_trigger_serializes_it(hold):
    from airflow.sdk.exceptions import TaskDeferred

    from ray_operators.sensors.iceberg import IcebergSnapshotSensor

    sensor = IcebergSnapshotSensor(task_id="wait", table="db.events", deferrable=True)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor._defer({}, None)
    trigger = deferred.value.trigger
    assert before + hold <= trigger.not_before <= time.time() + hold
    assert trigger.serialize()[1]["not_before"] == trigger.not_before


def test_a_trigger_holds_from_its_own_start_when_the_deferral_was_recorded_late(slept, monkeypatch, hold):
    """The task's clock ran out before its trigger started: the PATCH that records a deferral took
    9 s on 2 busy cores, and the trigger fired at once, before the scheduler had seen the
    deferring worker exit (test_pipelines_scheduler.py's backfill got a third try from it)."""
    trigger = RayJobTrigger(submission_id="raysubmit_1", not_before=time.time() - 20)

    (event,) = _events_of_a_job_done_at_once(trigger, monkeypatch)
    assert event.payload["status"] == "SUCCEEDED"
    assert len(slept) == 1 and hold - 1 < slept[0] <= hold


def test_hold_from_is_the_later_of_the_tasks_clock_and_the_triggers_start(hold):
    now = time.time()
    assert _resume.hold_from(None, now) is None  # an asset watcher's trigger: no task deferred
    assert _resume.hold_from(now - 20, now) == now + hold
    assert _resume.hold_from(now + 30, now) == now + 30
