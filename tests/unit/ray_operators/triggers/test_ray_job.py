"""RayJobTrigger on error paths, against a scripted fake dashboard."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import time

from ray_operators.triggers.ray_job import MAX_CONSECUTIVE_ERRORS, RayJobTrigger
from tests.helpers.fake_ray import TOKEN, job, trigger_events


def test_trigger_serialize_round_trip_is_json_safe():
    trigger = RayJobTrigger(
        submission_id="s-a1", ray_conn_id="r", poll_interval=3, log_offset=42, deadline=1.5, stream_logs=False
    )
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, name = classpath.rsplit(".", 1)
    clone = getattr(importlib.import_module(module), name)(**kwargs)
    assert clone.serialize() == (classpath, kwargs)
    assert TOKEN not in json.dumps(kwargs)


def test_trigger_rides_out_transient_errors_and_streams_each_line_once(fake, capfd):
    fake.on(
        "GET",
        "/api/jobs/j",
        (500, "dashboard restarting"),
        (500, "dashboard restarting"),
        (200, job("RUNNING", "j")),
        (200, job("RUNNING", "j")),
        (200, job("SUCCEEDED", "j")),
    )
    fake.on(
        "GET",
        "/api/jobs/j/logs",
        (200, {"logs": "one\ntw"}),
        (200, {"logs": "one\ntwo\nthr"}),
        (200, {"logs": "one\ntwo\nthree"}),
    )
    events = asyncio.run(
        trigger_events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.01))
    )
    assert events == [
        {
            "status": "SUCCEEDED",
            "submission_id": "j",
            "log_offset": len("one\ntwo\nthree"),
            "timed_out": False,
            "error": None,
            "log_summary": {"result": None, "tail": None},
        }
    ]
    # Airflow's structlog writes task and trigger logs to the console here.
    streamed = re.findall(r"\[ray\] (\w+)", capfd.readouterr().out)
    assert streamed == ["one", "two", "three"]


def test_trigger_gives_up_after_too_many_consecutive_errors(fake):
    fake.on("GET", "/api/jobs/j", (502, "bad gateway"))
    (event,) = asyncio.run(
        trigger_events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.001))
    )
    assert event["status"] is None and "HTTP 502" in event["error"]
    assert len([r for r in fake.requests if r["path"] == "/api/jobs/j"]) == MAX_CONSECUTIVE_ERRORS


def test_trigger_fails_fast_on_auth_error(fake):
    fake.on("GET", "/api/jobs/j", (403, "Forbidden"))
    (event,) = asyncio.run(
        trigger_events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.01))
    )
    assert "wrong or expired" in event["error"]
    assert len(fake.requests) == 1


def test_trigger_stops_the_job_at_its_deadline(fake):
    fake.on(
        "GET",
        "/api/jobs/j",
        (200, job("RUNNING", "j")),
        (200, job("RUNNING", "j")),
        (200, job("STOPPED", "j")),
    )
    fake.on("GET", "/api/jobs/j/logs", (200, {"logs": "working\n"}))
    fake.on("POST", "/api/jobs/j/stop", (200, {"stopped": True}))
    trigger = RayJobTrigger(
        submission_id="j", ray_conn_id="fake_ray", poll_interval=0.01, deadline=time.time() - 1
    )
    (event,) = asyncio.run(trigger_events(trigger))
    assert event["timed_out"] is True and event["status"] == "STOPPED"
    assert ("POST", "/api/jobs/j/stop") in {(r["method"], r["path"]) for r in fake.requests}


def test_trigger_cleanup_never_stops_and_on_kill_stops_only_active_jobs(fake):
    fake.on("GET", "/api/jobs/j", (200, job("RUNNING", "j")))
    fake.on("POST", "/api/jobs/j/stop", (200, {"stopped": True}))
    trigger = RayJobTrigger(submission_id="j", ray_conn_id="fake_ray")
    asyncio.run(trigger.cleanup())
    assert not any(r["method"] == "POST" for r in fake.requests)
    asyncio.run(trigger.on_kill())
    assert [r["path"] for r in fake.requests if r["method"] == "POST"] == ["/api/jobs/j/stop"]
    fake.on("GET", "/api/jobs/j", (200, job("SUCCEEDED", "j")))
    asyncio.run(trigger.on_kill())
    assert len([r for r in fake.requests if r["method"] == "POST"]) == 1


def test_a_slow_response_is_a_transient_error_not_a_lost_job(fake, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLOW_RAY",
        json.dumps(
            {
                "conn_type": "ray",
                "host": "127.0.0.1",
                "port": fake.port,
                "password": TOKEN,
                "extra": {"request_timeout": 0.3},
            }
        ),
    )
    fake.on("GET", "/api/jobs/j", (200, job("RUNNING", "j"), 1.0), (200, job("SUCCEEDED", "j")))
    fake.on("GET", "/api/jobs/j/logs", (200, {"logs": "done\n"}))
    (event,) = asyncio.run(
        trigger_events(RayJobTrigger(submission_id="j", ray_conn_id="slow_ray", poll_interval=0.01))
    )
    assert event["status"] == "SUCCEEDED" and event["error"] is None


def test_result_ends_log_travels_with_the_trigger():
    trigger = RayJobTrigger(submission_id="j", result_ends_log=True)
    assert trigger.serialize()[1]["result_ends_log"] is True
    assert RayJobTrigger(**trigger.serialize()[1]).result_ends_log is True
    assert RayJobTrigger(submission_id="j").result_ends_log is False
