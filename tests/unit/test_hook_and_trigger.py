"""RayJobsHook and RayJobTrigger on error paths, against a scripted fake dashboard."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import time

import pytest

from ray_operators.hooks.ray import RayAuthError, RayConnectionConfig, RayJobsError, RayJobsHook
from ray_operators.triggers.ray_job import MAX_CONSECUTIVE_ERRORS, RayJobTrigger
from tests.unit.fake_ray import FakeRayDashboard, job

TOKEN = "s3cret-token-value-42"


@pytest.fixture
def fake(monkeypatch):
    with FakeRayDashboard() as dashboard:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FAKE_RAY",
            json.dumps({"conn_type": "ray", "host": "127.0.0.1", "port": dashboard.port, "password": TOKEN}),
        )
        yield dashboard


def _conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "ray", **fields}))


def test_token_goes_in_authorization_header_by_default(fake):
    fake.on("GET", "/api/jobs/j", (200, job("RUNNING", "j")))
    assert RayJobsHook("fake_ray").get_job_info("j")["status"] == "RUNNING"
    headers = fake.requests[-1]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert "X-Ray-Authorization" not in headers


def test_proxy_mode_sends_x_ray_authorization_and_extra_headers_and_cookies(fake, monkeypatch):
    _conn(
        monkeypatch,
        "proxied_ray",
        host=f"http://127.0.0.1:{fake.port}",
        password=TOKEN,
        extra={
            "auth_header": "x-ray-authorization",
            "headers": {"Authorization": "Basic proxy-creds"},
            "cookies": {"session": "abc"},
        },
    )
    fake.on("GET", "/api/jobs/j", (200, job("RUNNING", "j")))
    RayJobsHook("proxied_ray").get_job_info("j")
    headers = fake.requests[-1]["headers"]
    assert headers["X-Ray-Authorization"] == f"Bearer {TOKEN}"
    assert headers["Authorization"] == "Basic proxy-creds"
    assert "session=abc" in headers["Cookie"]


def test_config_hides_secrets_and_builds_dashboard_links(monkeypatch):
    _conn(
        monkeypatch,
        "cfg_ray",
        host="ray.internal",
        port=8265,
        schema="https",
        password=TOKEN,
        extra={"dashboard_url": "https://ray.example.com/", "metadata": {"team": "ml"}, "verify": "false"},
    )
    config = RayJobsHook("cfg_ray").config
    assert config.base_url == "https://ray.internal:8265"
    assert config.verify is False
    assert config.metadata == {"team": "ml"}
    assert TOKEN not in repr(config)
    assert config.scrub(f"boom {TOKEN} boom") == "boom *** boom"
    assert config.job_url("a b") == "https://ray.example.com/#/jobs/a%20b"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": ""}, "host is empty"),
        ({"host": "h", "schema": "ftp"}, "schema must be 'http' or 'https'"),
        ({"host": "h", "extra": {"headers": "{not json"}}, "extra.headers is not valid JSON"),
        ({"host": "h", "extra": {"cookies": [1]}}, "extra.cookies must be a JSON object"),
        ({"host": "h", "extra": {"auth_header": "x-token"}}, "extra.auth_header must be one of"),
    ],
)
def test_bad_connection_fields_name_the_connection_and_field(monkeypatch, fields, message):
    _conn(monkeypatch, "broken_ray", **fields)
    with pytest.raises(RayJobsError, match=message) as err:
        _ = RayJobsHook("broken_ray").config
    assert "'broken_ray'" in str(err.value)


def test_server_error_is_one_line_without_secrets(fake):
    fake.on("GET", "/api/jobs/j", (500, f"Traceback...\nValueError: bad thing near {TOKEN}\n"))
    with pytest.raises(RayJobsError) as err:
        RayJobsHook("fake_ray").get_job_info("j")
    text = str(err.value)
    assert "HTTP 500" in text and "ValueError: bad thing" in text
    assert TOKEN not in text and "\n" not in text


@pytest.mark.parametrize(("status", "words"), [(401, "no auth token was sent"), (403, "wrong or expired")])
def test_auth_failures_say_what_is_wrong(fake, status, words):
    fake.on("GET", "/api/jobs/j", (status, "Unauthorized"))
    with pytest.raises(RayAuthError, match=words):
        RayJobsHook("fake_ray").get_job_info("j")


def test_unreachable_cluster_is_a_clear_error(monkeypatch):
    from ray_operators.devstack.ports import free_port

    _conn(monkeypatch, "gone_ray", host="127.0.0.1", port=free_port(), password=TOKEN)
    with pytest.raises(RayJobsError, match="Cannot reach the Ray Jobs API"):
        RayJobsHook("gone_ray").get_job_info("j")
    ok, message = RayJobsHook("gone_ray").test_connection()
    assert not ok and "Cannot reach" in message and TOKEN not in message


def test_missing_job_is_none_not_an_error(fake):
    fake.on("GET", "/api/jobs/nope", (404, "Job nope does not exist"))
    assert RayJobsHook("fake_ray").get_job_info("nope") is None


# ---- trigger ---------------------------------------------------------------------------------


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


async def _events(trigger: RayJobTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


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
        _events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.01))
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
        _events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.001))
    )
    assert event["status"] is None and "HTTP 502" in event["error"]
    assert len([r for r in fake.requests if r["path"] == "/api/jobs/j"]) == MAX_CONSECUTIVE_ERRORS


def test_trigger_fails_fast_on_auth_error(fake):
    fake.on("GET", "/api/jobs/j", (403, "Forbidden"))
    (event,) = asyncio.run(
        _events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.01))
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
    (event,) = asyncio.run(_events(trigger))
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


def test_connection_config_from_connection_object():
    from airflow.models import Connection

    conn = Connection(conn_id="c", conn_type="ray", host="https://ray.example.com/prefix/", password=TOKEN)
    config = RayConnectionConfig.from_connection(conn)
    assert config.base_url == "https://ray.example.com/prefix"
    assert config.request_headers() == {"Authorization": f"Bearer {TOKEN}"}


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
        _events(RayJobTrigger(submission_id="j", ray_conn_id="slow_ray", poll_interval=0.01))
    )
    assert event["status"] == "SUCCEEDED" and event["error"] is None


# ---- log streaming over the websocket: error paths ---------------------------------------------


class FakeTailDashboard:
    """An aiohttp stand-in for the dashboard's status, logs and ``/logs/tail`` websocket routes.

    ``sessions`` scripts the websocket: one list of messages per connection, then how it ends
    (``"close"``: a normal close, ``"drop"``: an abnormal one, ``"hang"``: stays open, silent).
    ``statuses`` scripts the job's status (the last one repeats); without it the job is RUNNING
    until a socket has closed normally, as Ray closes it only once the job is terminal.
    """

    def __init__(self, logs: str, sessions: list[tuple[list[str], str]], statuses: list[str] | None = None):
        self.statuses, self.logs, self.sessions = statuses, logs, list(sessions)
        self.closed_normally = False
        self.requests: list[dict] = []
        self.open_sockets = 0

    async def __aenter__(self):
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/api/jobs/{sid}", self._status)
        app.router.add_get("/api/jobs/{sid}/logs", self._logs)
        app.router.add_get("/api/jobs/{sid}/logs/tail", self._tail)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()

    def _record(self, request) -> None:
        self.requests.append({"path": request.path_qs, "headers": dict(request.headers)})

    async def _status(self, request):
        from aiohttp import web

        self._record(request)
        if self.statuses is None:
            status = "SUCCEEDED" if self.closed_normally else "RUNNING"
        else:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.json_response(job(status, request.match_info["sid"]))

    async def _logs(self, request):
        from aiohttp import web

        self._record(request)
        return web.json_response({"logs": self.logs})

    async def _tail(self, request):
        from aiohttp import web

        self._record(request)
        messages, end = self.sessions.pop(0) if len(self.sessions) > 1 else self.sessions[0]
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.open_sockets += 1
        try:
            for message in messages:
                await ws.send_str(message)
            if end == "drop":
                request.transport.close()
            elif end == "hang":
                async for _ in ws:  # until the client closes it
                    pass
            else:
                self.closed_normally = True
                await ws.close()
        finally:
            self.open_sockets -= 1
        return ws


def _fake_conn(monkeypatch, port: int, **extra) -> None:
    _conn(monkeypatch, "tail_ray", host="127.0.0.1", port=port, password=TOKEN, extra=extra)


class _Lines:
    """A stand-in for the trigger's logger: keeps what it shows."""

    def __init__(self):
        self.shown: list[str] = []
        self.warnings: list[str] = []

    def info(self, message, *args):
        self.shown.append(message % args)

    def warning(self, message, *args):
        self.warnings.append(message % args)


def _trigger(log: _Lines, **kwargs) -> RayJobTrigger:
    class Trigger(RayJobTrigger):
        pass

    Trigger.log = log  # type: ignore[assignment]
    return Trigger(submission_id="j", ray_conn_id="tail_ray", poll_interval=0.01, **kwargs)


def _ray_lines(log: _Lines) -> list[str]:
    return [line.removeprefix("[ray] ") for line in log.shown if line.startswith("[ray] ")]


LOG = "".join(f"line {i}\n" for i in range(30)) + '::ray-airflow-result::{"n": 30}\n'


@pytest.fixture
def big_log(monkeypatch):
    """Treat the fake's small log as a big one: at the end the socket is read until Ray closes
    it, not given up for one download (see ``SMALL_LOG_CHARS``)."""
    import ray_operators._log_stream as log_stream

    monkeypatch.setattr(log_stream, "SMALL_LOG_CHARS", 0)


def test_socket_that_drops_is_reopened_and_no_line_is_repeated(monkeypatch, big_log):
    async def scenario():
        sessions = [([LOG[:100], LOG[100:137]], "drop"), ([LOG[:50], LOG[50:]], "close")]
        async with FakeTailDashboard(LOG, sessions) as fake:
            _fake_conn(monkeypatch, fake.port)
            log = _Lines()
            (event,) = [e.payload async for e in _trigger(log).run()]
            return fake, log, event

    fake, log, event = asyncio.run(scenario())
    assert _ray_lines(log) == [f"line {i}" for i in range(30)]
    assert event["status"] == "SUCCEEDED" and event["log_offset"] == len(LOG)
    assert event["log_summary"] == {"result": {"n": 30}, "tail": None}
    # Two sockets, and the whole-log endpoint never called.
    paths = [r["path"] for r in fake.requests]
    assert paths.count("/api/jobs/j/logs/tail") == 2 and "/api/jobs/j/logs" not in paths
    assert log.warnings == []


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED"])
def test_a_small_log_is_downloaded_once_at_the_end_instead_of_waiting_for_the_socket(monkeypatch, status):
    """Ray's socket closes seconds after a job ends. A log that streamed less than
    SMALL_LOG_CHARS when the job is terminal is finished with one download (here the socket
    hangs and the stall guard is an hour: only the small-log rule can end it), every line once."""
    import ray_operators._log_stream as log_stream

    monkeypatch.setattr(log_stream, "TAIL_STALL_SECONDS", 3600)

    async def scenario():
        async with FakeTailDashboard(LOG, [([LOG[:60]], "hang")], ["RUNNING", "RUNNING", status]) as fake:
            _fake_conn(monkeypatch, fake.port)
            log = _Lines()
            (event,) = [e.payload async for e in _trigger(log).run()]
            return fake, log, event, fake.open_sockets

    fake, log, event, still_open = asyncio.run(scenario())
    assert _ray_lines(log) == [f"line {i}" for i in range(30)]
    assert event["status"] == status and event["log_offset"] == len(LOG)
    assert event["log_summary"]["result"] == {"n": 30}
    assert [r["path"] for r in fake.requests].count("/api/jobs/j/logs") == 1
    assert log.warnings == []
    assert still_open == 0


def test_socket_sends_the_token_in_a_header_never_in_the_url(monkeypatch):
    async def scenario():
        async with FakeTailDashboard(LOG, [([LOG], "close")], ["SUCCEEDED"]) as fake:
            _fake_conn(monkeypatch, fake.port, auth_header="x-ray-authorization", headers={"X-Proxy": "p1"})
            [e async for e in _trigger(_Lines()).run()]
            return fake

    fake = asyncio.run(scenario())
    (tail,) = [r for r in fake.requests if r["path"].endswith("/logs/tail")]
    assert tail["headers"]["X-Ray-Authorization"] == f"Bearer {TOKEN}"
    assert tail["headers"]["X-Proxy"] == "p1"
    assert tail["headers"]["Upgrade"].lower() == "websocket"
    assert all(TOKEN not in r["path"] for r in fake.requests)


def test_refused_socket_falls_back_to_whole_downloads_with_one_warning(fake, capfd):
    # The scripted dashboard answers the upgrade with a 404, as a Ray without the route would.
    fake.on(
        "GET",
        "/api/jobs/j",
        (200, job("RUNNING", "j")),
        (200, job("RUNNING", "j")),
        (200, job("FAILED", "j")),
    )
    fake.on("GET", "/api/jobs/j/logs", (200, {"logs": "a\nb"}), (200, {"logs": "a\nb\nc\nboom"}))
    (event,) = asyncio.run(
        _events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.01))
    )
    out = capfd.readouterr().out
    assert re.findall(r"\[ray\] (\w+)", out) == ["a", "b", "c", "boom"]
    assert out.count("downloading the whole log at every poll instead") == 1
    assert TOKEN not in out
    assert event["status"] == "FAILED"
    assert event["log_summary"] == {"result": None, "tail": "a\nb\nc\nboom"}
    assert [r["path"] for r in fake.requests].count("/api/jobs/j/logs/tail") == 1


def test_silent_socket_after_the_job_ended_is_given_up_for_one_download(monkeypatch, big_log):
    import ray_operators._log_stream as log_stream

    monkeypatch.setattr(log_stream, "TAIL_STALL_SECONDS", 0.3)

    async def scenario():
        async with FakeTailDashboard(LOG, [([LOG[:60]], "hang")], ["RUNNING", "SUCCEEDED"]) as fake:
            _fake_conn(monkeypatch, fake.port)
            log = _Lines()
            (event,) = [e.payload async for e in _trigger(log).run()]
            return fake, log, event, fake.open_sockets

    fake, log, event, still_open = asyncio.run(scenario())
    assert _ray_lines(log) == [f"line {i}" for i in range(30)]
    assert event["log_summary"] == {"result": {"n": 30}, "tail": None}
    assert [r["path"] for r in fake.requests].count("/api/jobs/j/logs") == 1
    assert any("stalled" in w for w in log.warnings)
    assert still_open == 0


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED"])
def test_a_stage_log_is_complete_at_its_result_line_only_when_the_job_succeeded(monkeypatch, big_log, status):
    """Ray keeps the socket open a second or two after a job ends. A stage's runner leaves right
    after its result line: once a succeeded stage's result line is read, the log is complete (no
    wait, no download). Any other ending waits for Ray (here: a socket that hangs, so the stall
    guard downloads the log instead)."""
    import ray_operators._log_stream as log_stream

    monkeypatch.setattr(log_stream, "TAIL_STALL_SECONDS", 0.3)

    async def scenario():
        async with FakeTailDashboard(LOG, [([LOG], "hang")], ["RUNNING", status]) as fake:
            _fake_conn(monkeypatch, fake.port)
            log = _Lines()
            (event,) = [e.payload async for e in _trigger(log, result_ends_log=True).run()]
            return fake, log, event, fake.open_sockets

    fake, log, event, still_open = asyncio.run(scenario())
    assert _ray_lines(log) == [f"line {i}" for i in range(30)]
    assert event["status"] == status and event["log_offset"] == len(LOG)
    assert event["log_summary"]["result"] == {"n": 30}
    downloads = [r["path"] for r in fake.requests].count("/api/jobs/j/logs")
    assert (downloads, any("stalled" in w for w in log.warnings)) == (
        (0, False) if status == "SUCCEEDED" else (1, True)
    )
    assert still_open == 0


def test_result_ends_log_travels_with_the_trigger():
    trigger = RayJobTrigger(submission_id="j", result_ends_log=True)
    assert trigger.serialize()[1]["result_ends_log"] is True
    assert RayJobTrigger(**trigger.serialize()[1]).result_ends_log is True
    assert RayJobTrigger(submission_id="j").result_ends_log is False


def test_cancelled_trigger_closes_its_socket(monkeypatch):
    async def scenario():
        async with FakeTailDashboard(LOG, [([LOG[:60]], "hang")], ["RUNNING"]) as fake:
            _fake_conn(monkeypatch, fake.port)
            log = _Lines()
            task = asyncio.ensure_future(_trigger(log).run().__anext__())
            for _ in range(200):
                if fake.open_sockets and log.shown:
                    break
                await asyncio.sleep(0.01)
            assert fake.open_sockets == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(200):
                if not fake.open_sockets:
                    break
                await asyncio.sleep(0.01)
            return fake.open_sockets, log

    still_open, log = asyncio.run(scenario())
    assert still_open == 0
    assert _ray_lines(log) == [f"line {i}" for i in range(8)]  # the partial 9th line is held back


def test_worker_reader_thread_falls_back_when_the_socket_is_refused(fake):
    from ray_operators._job_common import LogFollower
    from ray_operators._log_stream import LogTailThread

    fake.on("GET", "/api/jobs/j", (200, job("RUNNING", "j")))
    log = _Lines()
    tail = LogTailThread(RayJobsHook("fake_ray").config, "j", LogFollower(), log=log).start()
    try:
        # Known as soon as start() returns: the worker downloads the whole log at its next poll.
        assert tail.fallback
        assert len(log.warnings) == 1 and "HTTP 404 instead of a websocket" in log.warnings[0]
        assert TOKEN not in log.warnings[0]
    finally:
        tail.stop()
    assert not tail.running
    (upgrade,) = [r for r in fake.requests if r["path"] == "/api/jobs/j/logs/tail"]
    assert upgrade["headers"]["Authorization"] == f"Bearer {TOKEN}"
