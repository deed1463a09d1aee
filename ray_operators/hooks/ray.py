"""Hook for the Ray Jobs API (connection type ``ray``).

The connection names the Ray dashboard, which serves the Jobs API:

- ``host``/``port``/``schema``: the dashboard address; ``schema`` is the URL scheme (``http`` or
  ``https``, default ``http``). ``host`` may also be a full URL (``https://ray.example.com/prefix``).
- ``password``: the Ray auth token (Ray 2.60 turns token auth on for local clusters). It is sent as
  ``Authorization: Bearer <token>``, or as ``X-Ray-Authorization`` when the extra sets
  ``"auth_header": "x-ray-authorization"`` because a proxy in front of Ray owns ``Authorization``.
- ``extra`` (JSON): ``headers``, ``cookies`` and ``metadata`` (objects; ``metadata`` is merged into
  every submitted job's metadata), ``verify`` (TLS verification: true, false or a CA bundle path,
  default true), ``dashboard_url`` (the address users open in a browser, when it differs), and
  ``request_timeout`` (seconds per HTTP call, default 30).

The token never leaves this module in clear text: it is registered with Airflow's secret masker,
left out of ``repr``, and scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

from ray_operators.get_provider_info import RAY_UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    import aiohttp
    from airflow.sdk import Connection
    from ray.job_submission import JobSubmissionClient

#: Ray job states in which the job may still do work.
ACTIVE_STATES = frozenset({"PENDING", "RUNNING"})
#: Ray job states that will not change any more.
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})

AUTH_HEADERS = ("authorization", "x-ray-authorization")

#: Seconds between websocket pings while a log is tailed: keeps a quiet job's connection alive
#: through proxies, and notices a dead one.
LOG_TAIL_HEARTBEAT = 30.0
#: A response body larger than this is decoded in a thread, off the event loop (a whole-log
#: download in the triggerer).
DECODE_IN_THREAD_CHARS = 1 << 20


class RayJobsError(AirflowException):
    """A call to the Ray Jobs API failed."""


class RayAuthError(RayJobsError):
    """The Ray cluster rejected the connection's token (missing, wrong or expired)."""


class RayJobNotFoundError(RayJobsError):
    """The Ray cluster has no job with the given submission id."""


class RayLogTailUnavailableError(RayJobsError):
    """The dashboard would not open the log websocket (an older Ray, a proxy that refuses upgrades)."""


@dataclass(frozen=True)
class RayConnectionConfig:
    """A resolved ``ray`` connection. Holds the token: never log it, never put it in XCom."""

    base_url: str
    token: str | None = field(default=None, repr=False)
    auth_header: str = "authorization"
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    cookies: dict[str, str] = field(default_factory=dict, repr=False)
    metadata: dict[str, str] = field(default_factory=dict)
    verify: bool | str = True
    dashboard_url: str | None = None
    request_timeout: float = 30.0

    @classmethod
    def from_connection(cls, conn: Connection) -> RayConnectionConfig:
        """Build the config from an Airflow connection, validating its extra fields."""
        extra = conn.extra_dejson or {}
        conn_id = getattr(conn, "conn_id", None) or "?"
        host = (conn.host or "").strip()
        if not host:
            raise RayJobsError(f"Connection {conn_id!r}: host is empty; set it to the Ray dashboard address")
        if "://" in host:
            base_url = host.rstrip("/")
        else:
            scheme = (conn.schema or "http").strip().lower() or "http"
            if scheme not in ("http", "https"):
                raise RayJobsError(
                    f"Connection {conn_id!r}: schema must be 'http' or 'https', got {conn.schema!r}"
                )
            port = f":{conn.port}" if conn.port else ""
            base_url = f"{scheme}://{host}{port}"

        def _object(name: str) -> dict[str, str]:
            value = extra.get(name) or {}
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as err:
                    raise RayJobsError(f"Connection {conn_id!r}: extra.{name} is not valid JSON") from err
            if not isinstance(value, dict):
                raise RayJobsError(f"Connection {conn_id!r}: extra.{name} must be a JSON object")
            return {str(k): str(v) for k, v in value.items()}

        # Empty form fields (conn-fields) arrive as null or "": the defaults apply.
        auth_header = str(extra.get("auth_header") or "authorization").lower()
        if auth_header not in AUTH_HEADERS:
            raise RayJobsError(
                f"Connection {conn_id!r}: extra.auth_header must be one of {', '.join(AUTH_HEADERS)}"
            )
        verify = extra.get("verify")
        verify = True if verify in (None, "") else verify
        if isinstance(verify, str) and verify.lower() in ("true", "false"):
            verify = verify.lower() == "true"
        return cls(
            base_url=base_url,
            token=(conn.password or None),
            auth_header=auth_header,
            headers=_object("headers"),
            cookies=_object("cookies"),
            metadata=_object("metadata"),
            verify=verify,
            dashboard_url=(extra.get("dashboard_url") or None),
            request_timeout=float(extra.get("request_timeout") or 30.0),
        )

    def request_headers(self) -> dict[str, str]:
        """Headers for every request: the extra's headers plus the auth header."""
        headers = dict(self.headers)
        if self.token:
            name = "Authorization" if self.auth_header == "authorization" else "X-Ray-Authorization"
            headers[name] = f"Bearer {self.token}"
        return headers

    def scrub(self, text: str) -> str:
        """Remove the token (and header/cookie values) from text that may reach a log or an error."""
        secrets = [self.token or "", *self.headers.values(), *self.cookies.values()]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def job_url(self, submission_id: str) -> str:
        """The job's page in the Ray dashboard."""
        return f"{(self.dashboard_url or self.base_url).rstrip('/')}/#/jobs/{quote(submission_id, safe='')}"


def auth_error_message(status: int, base_url: str) -> str:
    """One line that tells the user what is wrong with the token, without the token."""
    if status == 401:
        return (
            f"Ray rejected the request to {base_url}: no auth token was sent, and the cluster requires "
            "one. Put the token (`ray get-auth-token`) in the ray connection's password."
        )
    return (
        f"Ray rejected the request to {base_url}: the auth token in the ray connection is wrong or "
        "expired. Update the connection's password with the cluster's current token."
    )


def normalize_job_info(raw: dict[str, Any]) -> dict[str, Any]:
    """Reduce Ray's job details to the JSON-safe fields this provider uses."""
    status = raw.get("status")
    status = getattr(status, "value", status)
    return {
        "submission_id": raw.get("submission_id"),
        "job_id": raw.get("job_id"),
        "status": str(status) if status is not None else None,
        "message": raw.get("message"),
        "driver_exit_code": raw.get("driver_exit_code"),
        "start_time": raw.get("start_time"),
        "end_time": raw.get("end_time"),
        "metadata": dict(raw.get("metadata") or {}),
        "entrypoint": raw.get("entrypoint"),
    }


class RayJobsHook(BaseHook):
    """
    Talks to the Ray Jobs API of one Ray cluster.

    Synchronous calls use Ray's ``JobSubmissionClient`` (submission, with its ``runtime_env``
    packaging, and stop); :meth:`async_client` gives the trigger an aiohttp client that never
    blocks the event loop.

    :param ray_conn_id: id of a connection of type ``ray``.
    """

    conn_name_attr = "ray_conn_id"
    default_conn_name = "ray_default"
    conn_type = "ray"
    hook_name = "Ray"

    def __init__(self, ray_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ray_conn_id = ray_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Labels and placeholders of the connection form in the Airflow UI."""
        behaviour = RAY_UI_FIELD_BEHAVIOUR
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    @cached_property
    def config(self) -> RayConnectionConfig:
        """The resolved connection (the token is registered with the secret masker here)."""
        config = RayConnectionConfig.from_connection(self.get_connection(self.ray_conn_id))
        _mask(config)
        return config

    @classmethod
    async def aget_config(cls, ray_conn_id: str) -> RayConnectionConfig:
        """Resolve a connection from async code (the triggerer) without blocking the loop."""
        conn = await cls.aget_connection(ray_conn_id)
        config = RayConnectionConfig.from_connection(conn)
        _mask(config)
        return config

    # ---- synchronous API -------------------------------------------------------------------

    @cached_property
    def client(self) -> JobSubmissionClient:
        """Ray's ``JobSubmissionClient`` for this connection (it checks the connection once)."""
        from ray.job_submission import JobSubmissionClient

        config = self.config
        try:
            return JobSubmissionClient(
                config.base_url,
                headers=config.request_headers(),
                cookies=config.cookies or None,
                metadata=config.metadata or None,
                verify=config.verify,
            )
        except Exception as err:
            raise self._translate(err, "connect to") from None

    def get_conn(self) -> JobSubmissionClient:
        """Return the ``JobSubmissionClient``."""
        return self.client

    def _request(self, method: str, path: str) -> Any:
        import requests

        config = self.config
        try:
            response = requests.request(
                method,
                config.base_url + path,
                headers=config.request_headers(),
                cookies=config.cookies or None,
                verify=config.verify,
                timeout=config.request_timeout,
            )
        except requests.RequestException as err:
            raise RayJobsError(
                config.scrub(f"Cannot reach the Ray Jobs API at {config.base_url}: {type(err).__name__}")
            ) from None
        return _check_response(config, response.status_code, response.text, path)

    def submit_job(
        self,
        *,
        entrypoint: str,
        submission_id: str,
        runtime_env: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: dict[str, float] | None = None,
    ) -> str:
        """Submit a job under ``submission_id``; return the id. Ray refuses a duplicate id."""
        try:
            return self.client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata=metadata,
                entrypoint_num_cpus=entrypoint_num_cpus,
                entrypoint_num_gpus=entrypoint_num_gpus,
                entrypoint_memory=entrypoint_memory,
                entrypoint_resources=entrypoint_resources,
            )
        except RayJobsError:
            raise
        except Exception as err:
            raise self._translate(err, f"submit job {submission_id} to") from None

    def get_job_info(self, submission_id: str) -> dict[str, Any] | None:
        """The job's details (see :func:`normalize_job_info`), or ``None`` if Ray has no such job."""
        try:
            raw = self._request("GET", f"/api/jobs/{quote(submission_id, safe='')}")
        except RayJobNotFoundError:
            return None
        return normalize_job_info(raw)

    def get_job_logs(self, submission_id: str) -> str:
        """The job driver's whole log so far."""
        return str(self._request("GET", f"/api/jobs/{quote(submission_id, safe='')}/logs").get("logs", ""))

    def stop_job(self, submission_id: str) -> bool:
        """Ask Ray to stop the job (never delete it: its logs and status stay for the record)."""
        try:
            return bool(self.client.stop_job(submission_id))
        except RayJobsError:
            raise
        except Exception as err:
            raise self._translate(err, f"stop job {submission_id} on") from None

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job the cluster knows about."""
        return [normalize_job_info(job) for job in self._request("GET", "/api/jobs/")]

    def test_connection(self) -> tuple[bool, str]:
        """Check address and token from the Airflow UI's *Test* button."""
        try:
            config = self.config
            version = self._request("GET", "/api/version")
            # /api/version answers without auth on some setups: touch an endpoint that needs it.
            self._request("GET", "/api/jobs/")
        except Exception as err:
            return False, str(err)
        return True, f"Connected to Ray {version.get('ray_version', '?')} at {config.base_url}"

    def job_url(self, submission_id: str) -> str:
        """The job's page in the Ray dashboard."""
        return self.config.job_url(submission_id)

    def _translate(self, err: Exception, action: str) -> RayJobsError:
        """Turn a JobSubmissionClient error into one line without Ray internals or secrets."""
        config = self.config
        text = str(err)
        if type(err).__name__ == "AuthenticationError":
            status = 401 if "Authentication required" in text else 403
            return RayAuthError(auth_error_message(status, config.base_url))
        if "ConnectionError" in type(err).__name__ or "Failed to connect" in text:
            detail = "cannot reach the Ray Jobs API"
        else:
            # Ray's errors end with a traceback: keep its last meaningful line.
            lines = [line.strip() for line in text.splitlines() if any(c.isalnum() for c in line)]
            detail = lines[-1][:500] if lines else type(err).__name__
        return RayJobsError(config.scrub(f"Could not {action} Ray at {config.base_url}: {detail}"))

    # ---- asynchronous API ------------------------------------------------------------------

    @staticmethod
    def async_client(config: RayConnectionConfig) -> AsyncRayJobsClient:
        """An aiohttp client for the trigger; use it as ``async with``."""
        return AsyncRayJobsClient(config)


class AsyncRayJobsClient:
    """A small async Ray Jobs API client on aiohttp: status, logs and stop, nothing blocking."""

    def __init__(self, config: RayConnectionConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncRayJobsClient:
        import asyncio

        import aiohttp

        verify = self.config.verify
        self._ssl: Any = None
        if verify is False:
            self._ssl = False
        elif isinstance(verify, str):
            # Reading a CA bundle is file I/O: keep it off the event loop, once per client.
            self._ssl = await asyncio.to_thread(_ssl_context, verify)

        self._session = aiohttp.ClientSession(
            headers=self.config.request_headers(),
            cookies=self.config.cookies or None,
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str) -> Any:
        import aiohttp

        assert self._session is not None, "use AsyncRayJobsClient as `async with`"
        try:
            async with self._session.request(method, self.config.base_url + path, ssl=self._ssl) as response:
                text = await response.text()
                if len(text) > DECODE_IN_THREAD_CHARS:
                    return await asyncio.to_thread(_check_response, self.config, response.status, text, path)
                return _check_response(self.config, response.status, text, path)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            # aiohttp raises a bare TimeoutError when its total timeout fires mid-response.
            raise RayJobsError(
                self.config.scrub(
                    f"Cannot reach the Ray Jobs API at {self.config.base_url}: {type(err).__name__}"
                )
            ) from None

    async def get_job_info(self, submission_id: str) -> dict[str, Any] | None:
        try:
            raw = await self._request("GET", f"/api/jobs/{quote(submission_id, safe='')}")
        except RayJobNotFoundError:
            return None
        return normalize_job_info(raw)

    async def get_job_logs(self, submission_id: str) -> str:
        payload = await self._request("GET", f"/api/jobs/{quote(submission_id, safe='')}/logs")
        return str(payload.get("logs", ""))

    async def stop_job(self, submission_id: str) -> bool:
        payload = await self._request("POST", f"/api/jobs/{quote(submission_id, safe='')}/stop")
        return bool(payload.get("stopped", False))

    @contextlib.asynccontextmanager
    async def tail_job_logs(self, submission_id: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """Ray's ``/api/jobs/{id}/logs/tail`` websocket, open, with the headers, cookies and TLS
        settings of every other request (the token in a header, never in the URL).

        Ray sends the driver log from its beginning as text messages, follows it while the job
        runs, and closes the socket (code 1000) once the job is terminal and the log read to its end.

        :raises RayLogTailUnavailableError: the dashboard answered the upgrade with an HTTP status
            other than 101 (no such route in this Ray, a proxy that refuses websockets, no such job).
        :raises RayAuthError: the token was refused.
        :raises RayJobsError: the dashboard cannot be reached.
        """
        import aiohttp

        assert self._session is not None, "use AsyncRayJobsClient as `async with`"
        path = f"/api/jobs/{quote(submission_id, safe='')}/logs/tail"
        try:
            ws = await self._session.ws_connect(
                self.config.base_url + path,
                ssl=self._ssl,
                heartbeat=LOG_TAIL_HEARTBEAT,
                # Ray sends a line whole, however long: never refuse a message for its size.
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as err:
            if err.status in (401, 403):
                raise RayAuthError(auth_error_message(err.status, self.config.base_url)) from None
            raise RayLogTailUnavailableError(
                self.config.scrub(f"Ray Jobs API {path} answered HTTP {err.status} instead of a websocket")
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise RayJobsError(
                self.config.scrub(
                    f"Cannot reach the Ray Jobs API at {self.config.base_url}: {type(err).__name__}"
                )
            ) from None
        try:
            yield ws
        finally:
            await ws.close()


def _check_response(config: RayConnectionConfig, status: int, text: str, path: str) -> Any:
    if status in (401, 403):
        raise RayAuthError(auth_error_message(status, config.base_url))
    if status == 404:
        raise RayJobNotFoundError(config.scrub(f"Ray has no {path}: {text.strip()[:200]}"))
    if status >= 400:
        last = text.strip().splitlines()[-1] if text.strip() else ""
        raise RayJobsError(config.scrub(f"Ray Jobs API {path} answered HTTP {status}: {last[:500]}"))
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        raise RayJobsError(f"Ray Jobs API {path} answered with something that is not JSON") from None


def _ssl_context(ca_path: str) -> Any:
    import os
    import ssl

    if os.path.isdir(ca_path):
        return ssl.create_default_context(capath=ca_path)
    return ssl.create_default_context(cafile=ca_path)


def _mask(config: RayConnectionConfig) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older SDK layout
        return
    for secret in (config.token, *config.headers.values(), *config.cookies.values()):
        if secret:
            mask_secret(secret)
