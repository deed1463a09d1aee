"""Following a Ray job's log over the dashboard's websocket (ray_operators._log_stream): the
error paths, against a scripted fake dashboard."""

from __future__ import annotations

import asyncio
import re

import pytest

from ray_operators.hooks.ray import RayJobsHook
from ray_operators.triggers.ray_job import RayJobTrigger
from tests.helpers.fake_ray import TOKEN, job, ray_conn, trigger_events


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
    ray_conn(monkeypatch, "tail_ray", host="127.0.0.1", port=port, password=TOKEN, extra=extra)


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
        trigger_events(RayJobTrigger(submission_id="j", ray_conn_id="fake_ray", poll_interval=0.01))
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
