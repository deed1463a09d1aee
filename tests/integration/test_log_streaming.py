"""Log streaming against a real local Ray head: every line once, in order, in O(n).

The driver log is followed over Ray's ``/logs/tail`` websocket, so the whole-log endpoint
(``GET /api/jobs/{id}/logs``) must not be called at all while a job that prints 50,000 lines runs,
deferred or in the worker. At its end the log is downloaded once only when the socket had brought
less than ``SMALL_LOG_CHARS`` by then (Ray's socket closes seconds after the job; see
``ray_operators/_log_stream.py``); otherwise the result and the tail come from the stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from tests.conftest import wait_for
from tests.helpers.airflow_helpers import run_dag, xcoms

pytestmark = pytest.mark.integration

LINES = 50_000
NUMBERED = re.compile(r"\[ray\] numbered line (\d+)\b")


@pytest.fixture
def env(airflow_db, ray_head):
    return ray_head


@pytest.fixture
def whole_log_downloads(monkeypatch):
    """Counts calls of both clients' whole-log download (the old way, O(n) per call): the job's
    status when each was made."""
    from ray_operators.hooks.ray import AsyncRayJobsClient, RayJobsHook

    calls: list[str] = []
    sync_logs, async_logs = RayJobsHook.get_job_logs, AsyncRayJobsClient.get_job_logs

    def counting_sync(self, submission_id):
        calls.append(self.get_job_info(submission_id)["status"])
        return sync_logs(self, submission_id)

    async def counting_async(self, submission_id):
        calls.append((await self.get_job_info(submission_id))["status"])
        return await async_logs(self, submission_id)

    monkeypatch.setattr(RayJobsHook, "get_job_logs", counting_sync)
    monkeypatch.setattr(AsyncRayJobsClient, "get_job_logs", counting_async)
    return calls


@pytest.fixture
def streamed_at_end(monkeypatch):
    """The characters each log stream had brought when its job was found terminal."""
    from ray_operators._log_stream import JobLogStream

    seen: list[int] = []
    wait_complete = JobLogStream.wait_complete

    async def recording(self, *args, **kwargs):
        seen.append(self.follower.read)
        return await wait_complete(self, *args, **kwargs)

    monkeypatch.setattr(JobLogStream, "wait_complete", recording)
    return seen


def _downloads_expected(streamed_at_end: list[int]) -> list[str]:
    """One download, after the job ended, for each stream that had brought a small log by then."""
    from ray_operators._log_stream import SMALL_LOG_CHARS

    return ["SUCCEEDED" for read in streamed_at_end if read < SMALL_LOG_CHARS]


@pytest.fixture
def triggers(monkeypatch):
    """The kwargs of every RayJobTrigger created (so a test knows it deferred, and from where)."""
    from ray_operators.triggers.ray_job import RayJobTrigger

    created: list[dict] = []
    init = RayJobTrigger.__init__

    def recording_init(self, **kwargs):
        created.append(kwargs)
        init(self, **kwargs)

    monkeypatch.setattr(RayJobTrigger, "__init__", recording_init)
    return created


def _numbers(text: str) -> list[int]:
    return [int(n) for n in NUMBERED.findall(text)]


@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_many_lines_stream_once_in_order_without_whole_log_downloads(
    env, capfd, whole_log_downloads, streamed_at_end, triggers, mode
):
    dag_id = f"ray_many_lines_{mode}"
    run = run_dag(dag_id)
    out, err = capfd.readouterr()

    assert run.state == "success"
    assert _numbers(out + err) == list(range(LINES))
    assert "::ray-airflow-result::" not in out + err
    assert xcoms(dag_id, run.run_id)["return_value"]["result"] == {"lines": LINES}
    # O(n): the log came over the websocket; no whole download while the job ran, and at its end
    # one only if the socket had brought less than SMALL_LOG_CHARS.
    assert len(streamed_at_end) == 1
    assert whole_log_downloads == _downloads_expected(streamed_at_end)
    # dag.test builds the trigger twice (the operator's, then one from its serialized kwargs).
    assert bool(triggers) == (mode == "deferrable")
    assert "downloading the whole log" not in out + err
    assert env.token not in out + err


def test_worker_hands_over_mid_log_and_the_trigger_goes_on_from_the_offset(
    env, capfd, whole_log_downloads, streamed_at_end, triggers
):
    dag_id = "ray_many_lines_handoff"
    run = run_dag(dag_id)
    out, err = capfd.readouterr()

    assert run.state == "success"
    # The worker showed a part of the log, then deferred with that offset: the trigger went on.
    assert triggers and all(trigger["log_offset"] >= 100_000 for trigger in triggers)
    numbers = _numbers(out + err)
    assert numbers == list(range(LINES)), "a line was lost or repeated across the handoff"
    assert xcoms(dag_id, run.run_id)["return_value"]["result"] == {"lines": LINES}
    assert len(streamed_at_end) == 1  # the trigger's stream (the worker's was stopped at the handoff)
    assert whole_log_downloads == _downloads_expected(streamed_at_end)


def test_a_quick_deferrable_job_ends_in_the_worker_without_a_trigger(env, capfd, triggers):
    """Default wait_before_defer: a job done within it never defers (no triggerer round trip, and
    nothing for Airflow 3.3's resume race to catch)."""
    run = run_dag("ray_quick_deferrable")
    out, err = capfd.readouterr()

    assert run.state == "success"
    assert triggers == []
    assert _numbers(out + err) == list(range(2_000))
    assert xcoms("ray_quick_deferrable", run.run_id)["return_value"]["result"] == {"lines": 2_000}


def test_a_longer_job_is_watched_then_handed_to_a_trigger_that_holds_its_event(
    env, capfd, triggers, monkeypatch
):
    """The worker shows the log for wait_before_defer seconds, then defers from that offset; the
    trigger may not fire sooner than ``[ray_lakehouse] resume_hold_seconds`` after the deferral.

    The suite runs dag.test() with a hold of 0 (no scheduler, no stale executor event to wait
    out); this test sets the default hold back, since the hold is what it checks."""
    from ray_operators.airflow_conf import DEFAULT_RESUME_HOLD_SECONDS

    monkeypatch.setenv("AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS", str(DEFAULT_RESUME_HOLD_SECONDS))
    deferred_after = time.time()
    run = run_dag("ray_many_lines_wait_then_defer")
    out, err = capfd.readouterr()

    assert run.state == "success"
    assert triggers, "the job outlived the worker's watch: it should have deferred"
    first = triggers[0]
    assert first["log_offset"] > 0  # the worker had shown the first part
    assert first["not_before"] >= deferred_after + DEFAULT_RESUME_HOLD_SECONDS
    assert _numbers(out + err) == list(range(LINES)), "a line was lost or repeated across the handoff"


def test_trigger_resumes_from_an_offset_with_the_proxy_auth_header(
    env, hook, monkeypatch, whole_log_downloads
):
    """A trigger handed an offset shows only what follows it; the token rides X-Ray-Authorization.

    The job has ended before the trigger starts, and its log is small: the socket is read to its
    end all the same (``SMALL_LOG_CHARS`` 0), since the socket's resumption is what is tested."""
    import ray_operators._log_stream as log_stream
    from ray_operators._job_common import new_log_lines
    from ray_operators.triggers.ray_job import RayJobTrigger
    from tests.helpers.ray_helpers import TEST_JOBS

    monkeypatch.setenv(
        "AIRFLOW_CONN_RAY_PROXIED",
        json.dumps(dict(env.connection(), extra={"auth_header": "x-ray-authorization"})),
    )
    sid = f"log-offset-{time.time_ns()}"
    hook.submit_job(
        entrypoint="python many_lines.py 3000",
        submission_id=sid,
        runtime_env={"working_dir": str(TEST_JOBS)},
    )
    wait_for(lambda: hook.get_job_info(sid)["status"] == "SUCCEEDED", 120, interval=0.5, what=sid)
    logs = hook.get_job_logs(sid)
    whole_log_downloads.clear()
    monkeypatch.setattr(log_stream, "SMALL_LOG_CHARS", 0)
    shown_before, offset = new_log_lines(logs[: logs.index("numbered line 1234\n")], 0)

    shown: list[str] = []

    class Log:
        def info(self, message, *args):
            shown.append(message % args)

        warning = info

    class Trigger(RayJobTrigger):
        log = Log()  # type: ignore[assignment]

    trigger = Trigger(submission_id=sid, ray_conn_id="ray_proxied", poll_interval=0.2, log_offset=offset)
    (event,) = asyncio.run(_events(trigger))

    assert event["status"] == "SUCCEEDED" and event["log_offset"] == len(logs)
    assert event["log_summary"] == {"result": {"lines": 3000}, "tail": None}
    assert _numbers("\n".join(shown)) == list(range(1234, 3000))
    assert _numbers("\n".join(f"[ray] {line}" for line in shown_before)) == list(range(1234))
    assert whole_log_downloads == []


async def _events(trigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_whole_log_downloads_still_work_where_there_is_no_socket(
    env, capfd, whole_log_downloads, monkeypatch, mode
):
    """The fallback (an older Ray, a proxy without websockets), forced: same lines, same result."""
    import ray_operators._log_stream as log_stream

    monkeypatch.setattr(log_stream, "FORCE_WHOLE_LOG_DOWNLOAD", True)
    dag_id = f"ray_success_{mode}"
    run = run_dag(dag_id)
    out, err = capfd.readouterr()

    assert run.state == "success"
    for i in range(8):
        assert len(re.findall(rf"\[ray\] counter line {i}\b", out + err)) == 1, f"line {i}"
    assert xcoms(dag_id, run.run_id)["return_value"]["result"] == {"lines": 8}
    assert whole_log_downloads, "the fallback downloads the whole log"
