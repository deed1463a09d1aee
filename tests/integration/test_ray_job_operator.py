"""RayJobOperator against a real local Ray head, run by real Airflow (dag.test)."""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import BAD_TOKEN, wait_for
from tests.helpers.airflow_helpers import jobs_of, run_dag, start_dag_subprocess, task_state, xcoms

pytestmark = pytest.mark.integration

MODES = ["deferrable", "sync"]
TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")


@pytest.fixture
def env(airflow_db, ray_head):
    return ray_head


def _task_end(dag_id: str, run_id: str):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id="count").one()
        return ti.end_date


def _all_logs(capfd) -> str:
    out, err = capfd.readouterr()
    return out + err


@pytest.mark.parametrize("mode", MODES)
def test_success_returns_result_and_streams_each_line_once(env, hook, capfd, mode):
    dag_id = f"ray_success_{mode}"
    run = run_dag(dag_id)
    logs = _all_logs(capfd)

    assert run.state == "success"
    values = xcoms(dag_id, run.run_id)
    result = values["return_value"]
    assert result["status"] == "SUCCEEDED"
    assert result["result"] == {"lines": 8}
    assert result["submission_id"].startswith(f"af-{dag_id}-count-")
    assert result["dashboard_url"].endswith(f"/#/jobs/{result['submission_id']}")
    assert result["dashboard_url"].startswith(env.address)
    assert result["start_time"] <= result["end_time"]
    assert values["ray_job_url"] == result["dashboard_url"]
    # The driver log reached the task log, each line exactly once, and the result line did not.
    for i in range(8):
        assert len(re.findall(rf"\[ray\] counter line {i}\b", logs)) == 1, f"line {i}"
    assert "[ray] ::ray-airflow-result::" not in logs
    # Job metadata carries the Airflow identity (and the templated user metadata).
    (job,) = jobs_of(hook, dag_id, run.run_id)
    assert job["metadata"]["airflow_task_id"] == "count"
    assert job["metadata"]["airflow_map_index"] == "-1"
    assert job["metadata"]["suite"] == dag_id
    # The token is a secret: never in the captured output.
    assert env.token not in logs


@pytest.mark.parametrize("mode", MODES)
def test_failed_job_fails_task_with_message_exit_code_and_log_tail(env, capfd, mode):
    dag_id = f"ray_fail_{mode}"
    run = run_dag(dag_id)
    logs = _all_logs(capfd)

    assert run.state == "failed"
    assert task_state(dag_id, run.run_id) == "failed"
    failure = logs[logs.index("ended FAILED") :]
    assert "driver exit code: 3" in failure
    assert "exit code 3" in failure
    tail = failure[failure.index("last 50 log lines:") :]
    assert "counter is failing on purpose" in tail
    assert "counter line 59" in tail
    # Only the last 50 lines: the first lines of the 61-line log are not in the tail.
    assert "counter line 5\n" not in tail


def test_rerun_of_succeeded_task_returns_result_without_a_second_job(env, hook):
    dag_id = "ray_success_sync"
    when = datetime(2026, 2, 1, tzinfo=UTC)
    first = run_dag(dag_id, when)
    second = run_dag(dag_id, when)

    assert first.run_id == second.run_id
    assert second.state == "success"
    jobs = jobs_of(hook, dag_id, first.run_id)
    assert len(jobs) == 1
    assert xcoms(dag_id, second.run_id)["return_value"]["submission_id"] == jobs[0]["submission_id"]


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_worker_crash_reattaches_to_the_running_job(env, hook, tmp_path: Path, mode):
    dag_id = f"ray_long_{mode}"
    when = datetime(2026, 3, 1, tzinfo=UTC)
    worker = start_dag_subprocess(dag_id, when, tmp_path / "worker.log")
    try:
        job = wait_for(
            lambda: next((j for j in jobs_of(hook, dag_id) if j["status"] == "RUNNING"), None),
            timeout=90,
            what="the job to run",
        )
        # The worker dies without a chance to clean up (OOM kill, node loss).
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert hook.get_job_info(job["submission_id"])["status"] == "RUNNING"

    run = run_dag(dag_id, when)

    assert run.state == "success"
    jobs = jobs_of(hook, dag_id, run.run_id)
    assert [j["submission_id"] for j in jobs] == [job["submission_id"]], "a second job was submitted"
    assert xcoms(dag_id, run.run_id)["return_value"]["result"] == {"lines": 12}


def test_kill_while_running_in_worker_stops_the_job(env, hook, tmp_path: Path):
    dag_id = "ray_long_sync"
    when = datetime(2026, 4, 1, tzinfo=UTC)
    worker = start_dag_subprocess(dag_id, when, tmp_path / "worker.log")
    try:
        job = wait_for(
            lambda: next((j for j in jobs_of(hook, dag_id) if j["status"] == "RUNNING"), None),
            timeout=90,
            what="the job to run",
        )
        # Airflow kills a task (mark failed, timeout, scheduler kill) with SIGTERM.
        worker.send_signal(signal.SIGTERM)
        # Wait for the job to end, however long that takes (the test's timeout bounds it): it must
        # end STOPPED, not SUCCEEDED after running its 12 lines.
        status = wait_for(
            lambda: (s := hook.get_job_info(job["submission_id"])["status"]) in TERMINAL and s,
            timeout=300,
            what="the Ray job to end",
        )
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=30)
    assert status == "STOPPED"
    assert "counter line 11" not in hook.get_job_logs(job["submission_id"])


@pytest.mark.parametrize("mode", MODES)
def test_job_timeout_stops_the_job_and_fails_the_task(env, hook, capfd, mode):
    dag_id = f"ray_timeout_{mode}"
    run = run_dag(dag_id)
    logs = _all_logs(capfd)

    assert run.state == "failed"
    (job,) = jobs_of(hook, dag_id, run.run_id)
    assert job["status"] == "STOPPED"
    assert "ran past job_timeout=4" in logs
    # The stop came from the deadline (the worker's watch, or the trigger's), not from the job's end.
    stopping = "passed job_timeout=4s: stopping it" if mode == "sync" else "passed its deadline: stopping it"
    assert stopping in logs
    # Stopped soon after its deadline, not left to run its 120 lines (a line a second): the job
    # printed a handful, counted by the job itself, not timed by the test. (4 lines by the
    # deadline. The bound is a time bound in the job's own seconds: it fails only if the stop came
    # more than about 26 s after the deadline, against the 116 s a job left to run would add.)
    printed = re.findall(r"counter line \d+", hook.get_job_logs(job["submission_id"]))
    assert 1 <= len(printed) <= 30, len(printed)
    # The task failed only once the job had stopped.
    ended = _task_end(dag_id, run.run_id)
    assert job["end_time"] / 1000 <= ended.timestamp(), (job["end_time"], ended)


@pytest.mark.parametrize("mode", MODES)
def test_wrong_token_gives_clear_auth_error_and_never_leaks(env, hook, capfd, mode):
    dag_id = f"ray_badtoken_{mode}"
    run = run_dag(dag_id)
    logs = _all_logs(capfd)

    assert run.state == "failed"
    assert "auth token in the ray connection is wrong or expired" in logs
    assert BAD_TOKEN not in logs
    assert env.token not in logs
    assert jobs_of(hook, dag_id) == []
    for value in xcoms(dag_id, run.run_id).values():
        assert BAD_TOKEN not in str(value)


def test_connection_test_reports_good_and_bad_tokens(env):
    from ray_operators.hooks.ray import RayJobsHook

    ok, message = RayJobsHook("ray_default").test_connection()
    assert ok, message
    assert "Ray 2.60" in message
    ok, message = RayJobsHook("ray_bad").test_connection()
    assert not ok
    assert "wrong or expired" in message
    assert "\n" not in message
    assert BAD_TOKEN not in message
