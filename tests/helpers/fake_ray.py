"""A scripted stand-in for the Ray dashboard, for error paths a real cluster cannot produce on demand."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeRayDashboard:
    """Answers ``(method, path)`` with scripted ``(status, body)`` replies; the last one repeats."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                fake.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
                )
                replies = fake.script.get((self.command, self.path)) or [(404, "not found")]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                status, body = reply[0], reply[1]
                if len(reply) > 2:
                    time.sleep(reply[2])  # a slow dashboard
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def on(self, method: str, path: str, *replies: tuple[int, Any]) -> None:
        self.script[(method, path)] = list(replies)

    def __enter__(self) -> FakeRayDashboard:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def job(status: str, submission_id: str = "job-a1", **extra: Any) -> dict[str, Any]:
    return {"submission_id": submission_id, "status": status, "metadata": {}, **extra}


#: The token the fake dashboard's connection carries (tests check it never leaks).
TOKEN = "s3cret-token-value-42"


def ray_conn(monkeypatch: Any, conn_id: str, **fields: Any) -> None:
    """Define the Airflow connection ``conn_id`` of type ``ray`` with ``fields``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "ray", **fields}))


async def trigger_events(trigger: Any) -> list[dict]:
    """Every event payload a trigger yields, in order."""
    return [event.payload async for event in trigger.run()]
