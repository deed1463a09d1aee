"""Operator that runs one Ray job through the Ray Jobs API."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ResumableJobMixin
from airflow.sdk.exceptions import AirflowException, AirflowTaskTimeout

from ray_operators._job_common import (
    LogFollower,
    attempt_id,
    build_result,
    failure_message,
    flush_log_tail,
    is_result_line,
    log_tail,
    poll_delays,
    submission_base,
)
from ray_operators._log_stream import LogTailThread
from ray_operators.airflow_conf import default_deferrable
from ray_operators.contract.result import SUBMISSION_ID_ENV, parse_result
from ray_operators.hooks.ray import ACTIVE_STATES, TERMINAL_STATES, RayAuthError, RayJobsError, RayJobsHook
from ray_operators.links.ray import RAY_JOB_URL_XCOM_KEY, RayJobLink
from ray_operators.triggers._resume import not_before_from_now
from ray_operators.triggers.ray_job import MAX_CONSECUTIVE_ERRORS, STOP_GRACE_SECONDS, RayJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Extra time the triggerer gives a trigger past the job deadline before failing the task itself.
DEFER_TIMEOUT_MARGIN = timedelta(seconds=120)
#: A deferrable task watches its job in the worker this long before it defers.
DEFAULT_WAIT_BEFORE_DEFER_S = 10.0


class RayJobOperator(ResumableJobMixin, BaseOperator):
    """
    Run a Ray job through the Ray Jobs API, exactly once per task instance.

    Every try of a task instance looks for its own jobs first (their submission ids derive from
    dag id, task id, run id and map index): a PENDING or RUNNING job is reattached, a SUCCEEDED
    one returns its result without running again, and only after FAILED or STOPPED is a new
    attempt submitted (same prefix, next ``-aN`` suffix). Killing, marking failed or timing out
    the task stops the Ray job, whether the task waits in a worker or deferred in the triggerer.

    The driver log streams into the task log while the job runs, over Ray's log websocket (in the
    triggerer, or in a reader thread of the worker), so the whole log crosses the network once
    whatever its size; where the socket cannot be opened, the whole log is downloaded at every
    poll instead, with one warning. A job reports a small JSON
    result with :func:`ray_operators.contract.result.report_result`; the operator returns
    ``{submission_id, status, dashboard_url, start_time, end_time, result}`` as its XCom value.

    :param entrypoint: shell command the job driver runs (templated).
    :param ray_conn_id: connection of type ``ray``.
    :param runtime_env: Ray runtime environment (``working_dir``, ``py_modules``, ``pip``,
        ``env_vars``...) (templated). Secrets do not belong here: the dashboard shows it.
    :param entrypoint_num_cpus: CPUs reserved for the driver (templated).
    :param entrypoint_num_gpus: GPUs reserved for the driver (templated).
    :param entrypoint_memory: memory in bytes reserved for the driver (templated).
    :param entrypoint_resources: custom resources reserved for the driver (templated).
    :param metadata: string metadata attached to the job, next to the Airflow identity (templated).
    :param deferrable: wait in the triggerer instead of holding a worker slot (default:
        ``[operators] default_deferrable``, as Airflow's own operators; our stacks set it to True).
    :param wait_before_defer: deferrable only: seconds to watch the job in the worker before
        deferring (default 10; 0 defers at once). A job done by then never defers, so it pays no
        triggerer round trip; a longer one hands its log over at the offset shown. A deferred
        task resumes no sooner than 10 s after it deferred: Airflow 3.3 fails a task resumed
        sooner (see :mod:`ray_operators.triggers._resume`).
    :param wait_for_completion: wait for the job to finish (default True); when False the task
        returns right after submission with the job's current status.
    :param poll_interval: seconds between status polls (default 2); in a job's first 5 s the
        polls come every quarter second, then the wait grows 1.5x per poll up to it, so a short
        job is seen done soon after it ends.
    :param job_timeout: longest run time of the job (seconds or timedelta, counted from the job's
        start); when passed, the job is stopped and the task fails. None means no limit.
    :param stream_logs: copy the driver log into the task log (default True).
    """

    template_fields: Sequence[str] = (
        "entrypoint",
        "runtime_env",
        "entrypoint_num_cpus",
        "entrypoint_num_gpus",
        "entrypoint_memory",
        "entrypoint_resources",
        "metadata",
    )
    template_fields_renderers = {
        "entrypoint": "bash",
        "runtime_env": "json",
        "entrypoint_resources": "json",
        "metadata": "json",
    }
    operator_extra_links = (RayJobLink(),)
    ui_color = "#e5f0ff"
    #: Whether the job's last output is its result line (see
    #: :class:`~ray_operators._log_stream.JobLogStream`): not for arbitrary entrypoints.
    result_ends_log = False
    external_id_key = "ray_submission_id"

    def __init__(
        self,
        *,
        entrypoint: str,
        ray_conn_id: str = RayJobsHook.default_conn_name,
        runtime_env: dict[str, Any] | None = None,
        entrypoint_num_cpus: float | str | None = None,
        entrypoint_num_gpus: float | str | None = None,
        entrypoint_memory: int | str | None = None,
        entrypoint_resources: dict[str, float] | None = None,
        metadata: dict[str, str] | None = None,
        deferrable: bool | None = None,
        wait_before_defer: float = DEFAULT_WAIT_BEFORE_DEFER_S,
        wait_for_completion: bool = True,
        poll_interval: float = 2.0,
        job_timeout: float | timedelta | None = None,
        stream_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.entrypoint = entrypoint
        self.ray_conn_id = ray_conn_id
        self.runtime_env = runtime_env
        self.entrypoint_num_cpus = entrypoint_num_cpus
        self.entrypoint_num_gpus = entrypoint_num_gpus
        self.entrypoint_memory = entrypoint_memory
        self.entrypoint_resources = entrypoint_resources
        self.metadata = metadata
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        if wait_before_defer < 0:
            raise ValueError(f"{self.task_id}: wait_before_defer must be >= 0, got {wait_before_defer}")
        self.wait_before_defer = float(wait_before_defer)
        self.wait_for_completion = wait_for_completion
        if poll_interval <= 0:
            raise ValueError(f"{self.task_id}: poll_interval must be positive, got {poll_interval}")
        self.poll_interval = poll_interval
        if isinstance(job_timeout, timedelta):
            job_timeout = job_timeout.total_seconds()
        if job_timeout is not None and job_timeout <= 0:
            raise ValueError(f"{self.task_id}: job_timeout must be positive, got {job_timeout}")
        self.job_timeout = job_timeout
        self.stream_logs = stream_logs
        self._submission_id: str | None = None
        self._log_offset = 0
        self._final: dict[str, Any] | None = None
        #: The job's details when it ended (its status and entrypoint), for lineage.
        self._job_info: dict[str, Any] | None = None
        #: The log as followed in this process (the sync wait), with its result and tail.
        self._follower: LogFollower | None = None

    @cached_property
    def hook(self) -> RayJobsHook:
        return RayJobsHook(ray_conn_id=self.ray_conn_id)

    # ---- entry points ----------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        self.remember_for_lineage()
        return self.execute_resumable(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: report the outcome of the job."""
        self.remember_for_lineage()
        self._submission_id = submission_id = event["submission_id"]
        self._log_offset = int(event.get("log_offset") or 0)
        if event.get("error"):
            raise AirflowException(f"Lost track of Ray job {submission_id}: {event['error']}")
        if event.get("timed_out"):
            raise AirflowTaskTimeout(
                f"Ray job {submission_id} ran past job_timeout={self.job_timeout}s; it was stopped "
                f"(status {event.get('status')})"
            )
        return self._finish(submission_id, context, summary=event.get("log_summary"))

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context):
        # "__fail__" means the triggerer gave up on the trigger (its timeout): the job must not
        # outlive the task.
        timed_out = next_kwargs and str(next_kwargs.get("error", "")).lower().endswith("timeout")
        if next_method == "__fail__" and timed_out and (sid := self._stored_submission_id(context)):
            self._stop_quietly(sid, "the trigger timed out")
        return super().resume_execution(next_method, next_kwargs, context)

    def on_kill(self) -> None:
        """Task killed, marked failed or timed out in the worker: stop the Ray job."""
        if self._submission_id:
            self._stop_quietly(self._submission_id, "the task was killed")

    def succeeded_job_still_holds(self, info: dict[str, Any]) -> bool:
        """Whether a SUCCEEDED earlier attempt of this task instance answers this try (its result is
        returned and nothing runs again). Always, here: an arbitrary job may not be repeatable.
        Subclasses whose jobs are idempotent narrow it (a stage whose commit was rolled back)."""
        return True

    # ---- OpenLineage (called by its listener once the task ended) ----------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The Ray job as the run's ``rayLakehouse`` facet; no datasets (an arbitrary job's
        reads and writes are unknown: the task's inlets and outlets, if any, stand for them)."""
        from ray_operators.lineage.openlineage import lineage

        return lineage([], [], self.ray_run_facet())

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)

    def remember_for_lineage(self) -> None:
        """Read the ``ray`` connection now, in the task's process: the OpenLineage listener builds
        events in a forked child, which must not call the task's supervisor for it."""
        try:
            self.hook.config  # noqa: B018 (a cached property: read it now)
        except Exception as err:  # lineage never fails a task; the job's own calls report it
            self.log.info("Ray connection %s for lineage: %s", self.ray_conn_id, err)

    def ended_job_info(self) -> dict[str, Any]:
        """The job's details as it ended (asked of Ray when this process did not see the end: a
        failure before or while waiting); empty when nothing was submitted or Ray cannot tell."""
        if self._job_info is None and self._submission_id:
            try:
                self._job_info = self.hook.get_job_info(self._submission_id)
            except Exception as err:  # lineage never fails a task
                self.log.info("Ray job %s details for lineage: %s", self._submission_id, err)
        return dict(self._job_info or {})

    def ray_run_facet(self, **fields: Any) -> Any:
        """The ``rayLakehouse`` run facet of this task's Ray job, plus ``fields``."""
        from ray_operators.lineage.openlineage import RayLakehouseRunFacet

        info = self.ended_job_info()
        submission_id = self._submission_id or info.get("submission_id")
        url = None
        if submission_id:
            try:
                url = self.hook.job_url(str(submission_id))
            except Exception as err:  # the connection went away: lineage without the link
                self.log.info("Ray dashboard URL for lineage: %s", err)
        return RayLakehouseRunFacet(
            engine="ray",
            submissionId=submission_id,
            status=info.get("status"),
            dashboardUrl=url,
            **fields,
        )

    # ---- ResumableJobMixin -----------------------------------------------------------------

    def submit_job(self, context: Context) -> str:
        """Find this task instance's live or finished job, or submit the next attempt."""
        base = self._submission_base(context)
        latest, info = self._latest_attempt(base)
        if info is not None and (
            info["status"] in ACTIVE_STATES
            or (info["status"] == "SUCCEEDED" and self.succeeded_job_still_holds(info))
        ):
            self.log.info(
                "Found Ray job %s (%s): reattaching, not resubmitting", info["submission_id"], info["status"]
            )
            return str(info["submission_id"])
        submission_id = attempt_id(base, latest + 1)
        # Known before the submit call returns, so a kill during a slow upload still stops it.
        self._submission_id = submission_id
        if info is not None:
            self.log.info(
                "Previous Ray job %s ended %s: submitting %s",
                info["submission_id"],
                info["status"],
                submission_id,
            )
        try:
            self.hook.submit_job(
                entrypoint=self.entrypoint,
                submission_id=submission_id,
                runtime_env=self._runtime_env_for(submission_id),
                metadata=self._job_metadata(context, latest + 1),
                entrypoint_num_cpus=_num(self.entrypoint_num_cpus),
                entrypoint_num_gpus=_num(self.entrypoint_num_gpus),
                entrypoint_memory=int(self.entrypoint_memory) if self.entrypoint_memory is not None else None,
                entrypoint_resources=self.entrypoint_resources,
            )
        except RayJobsError as err:
            # Another try of this task instance won the race for this id: wait for its job instead.
            if "already exists" not in str(err) or self.hook.get_job_info(submission_id) is None:
                raise
            self.log.info("Ray job %s was submitted concurrently: reattaching", submission_id)
        self.log.info("Submitted Ray job %s: %s", submission_id, self.hook.job_url(submission_id))
        return submission_id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        info = self.hook.get_job_info(str(external_id))
        return info["status"] if info else "MISSING"

    def is_job_active(self, status: str) -> bool:
        return status in ACTIVE_STATES

    def is_job_succeeded(self, status: str) -> bool:
        return status == "SUCCEEDED"

    # Airflow's mixin returns None; ours returns the job's result, which becomes the task's XCom.
    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any]:  # type: ignore[override]
        submission_id = self._submission_id = str(external_id)
        context["ti"].xcom_push(key=RAY_JOB_URL_XCOM_KEY, value=self.hook.job_url(submission_id))
        info = self.hook.get_job_info(submission_id)
        if info is None:
            raise AirflowException(f"Ray job {submission_id} vanished right after submission")
        if not self.wait_for_completion:
            self._final = build_result(info, "", self.hook.job_url(submission_id))
            return self._final
        deadline = self._deadline(info)
        if self.deferrable and info["status"] not in TERMINAL_STATES and self.wait_before_defer > 0:
            # A quick job ends here, in the worker; a longer one is handed to the trigger below.
            until = time.monotonic() + self.wait_before_defer
            if self._watch_in_worker(submission_id, info, deadline, until=until) is not None:
                return self._finish(submission_id, context)
            self._follower = None  # the trigger follows the log from the offset shown
        if self.deferrable and info["status"] not in TERMINAL_STATES:
            timeout = None
            if deadline is not None:
                timeout = timedelta(seconds=max(deadline - time.time(), 0)) + DEFER_TIMEOUT_MARGIN
            self.defer(
                trigger=RayJobTrigger(
                    submission_id=submission_id,
                    ray_conn_id=self.ray_conn_id,
                    poll_interval=self.poll_interval,
                    log_offset=self._log_offset,
                    deadline=deadline,
                    stream_logs=self.stream_logs,
                    result_ends_log=self.result_ends_log,
                    not_before=not_before_from_now(),
                ),
                method_name="execute_complete",
                timeout=timeout,
            )
        return self._wait_in_worker(submission_id, info, deadline, context)

    def _wait_in_worker(
        self, submission_id: str, info: dict[str, Any], deadline: float | None, context: Context
    ) -> dict[str, Any]:
        """Poll until the job is terminal, showing its log as it comes; then finish."""
        self._watch_in_worker(submission_id, info, deadline)
        return self._finish(submission_id, context)

    def _watch_in_worker(
        self, submission_id: str, info: dict[str, Any], deadline: float | None, *, until: float | None = None
    ) -> dict[str, Any] | None:
        """Poll until the job is terminal (its info, its log shown to the end), or until ``until``
        (monotonic seconds) passes with the job still active (None; its log shown up to
        ``self._log_offset``)."""
        tail = self._start_log_tail(submission_id) if self.stream_logs else None
        delays = poll_delays(self.poll_interval)
        try:
            while info["status"] not in TERMINAL_STATES:
                if deadline is not None and time.time() >= deadline:
                    status = self._stop_and_wait(submission_id, tail)
                    raise AirflowTaskTimeout(
                        f"Ray job {submission_id} ran past job_timeout={self.job_timeout}s; it was stopped "
                        f"(status {status})"
                    )
                if until is not None and time.monotonic() >= until:
                    return None
                self._follow_logs(submission_id, tail, next(delays))
                info = self._poll_info(submission_id)
                if info["status"] == "MISSING":
                    raise AirflowException(f"Ray job {submission_id} disappeared from the cluster")
            self._read_to_end(submission_id, tail, succeeded=info["status"] == "SUCCEEDED")
        finally:
            if tail is not None:
                tail.stop()
        return info

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        if self._final is not None and self._final["submission_id"] == str(external_id):
            return self._final
        self._submission_id = str(external_id)
        context["ti"].xcom_push(key=RAY_JOB_URL_XCOM_KEY, value=self.hook.job_url(self._submission_id))
        return self._finish(self._submission_id, context)

    # ---- internals -------------------------------------------------------------------------

    def _poll_info(self, submission_id: str) -> dict[str, Any]:
        """The job's info, riding out transient API errors as the trigger does."""
        for attempt in range(1, MAX_CONSECUTIVE_ERRORS + 1):
            try:
                return self.hook.get_job_info(submission_id) or {"status": "MISSING"}
            except RayAuthError:
                raise
            except RayJobsError as err:
                if attempt == MAX_CONSECUTIVE_ERRORS:
                    raise
                self.log.warning("Polling Ray job %s failed (%s): %s", submission_id, attempt, err)
                time.sleep(min(self.poll_interval * attempt, 30))
        raise AssertionError("unreachable")

    def _finish(
        self, submission_id: str, context: Context, summary: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Report a terminal job: its result, or a failure with the log's tail.

        The result and the tail come from the log as it was followed (``summary`` from the
        trigger, or this process's follower); only when nobody followed it (``stream_logs=False``,
        a job found already finished) is the whole log downloaded, once.
        """
        info = self._job_info = self.hook.get_job_info(submission_id)
        if info is None:
            raise AirflowException(f"Ray job {submission_id} disappeared from the cluster")
        succeeded = info["status"] == "SUCCEEDED"
        follower = self._follower
        if summary is not None and (succeeded or summary.get("tail") is not None):
            result, tail = summary.get("result"), summary.get("tail")
        elif follower is not None and follower.complete:
            result, tail = follower.result, follower.tail
        else:
            logs = self.hook.get_job_logs(submission_id)
            if self.stream_logs:
                self._emit(*flush_log_tail(logs, self._log_offset))
            result, tail = parse_result(logs), log_tail(logs)
        if not succeeded:
            raise AirflowException(failure_message(info, "", tail=tail or ""))
        self._final = build_result(info, "", self.hook.job_url(submission_id), result=result, parsed=True)
        self.log.info("Ray job %s succeeded; result: %s", submission_id, self._final["result"])
        return self._final

    def _start_log_tail(self, submission_id: str) -> LogTailThread:
        self._follower = LogFollower(self._log_offset)
        return LogTailThread(
            self.hook.config,
            submission_id,
            self._follower,
            log=self.log,
            retry_interval=self.poll_interval,
            result_ends_log=self.result_ends_log,
        ).start()

    def _follow_logs(self, submission_id: str, tail: LogTailThread | None, seconds: float) -> None:
        """Show the log as it comes for ``seconds`` (the time between two status polls)."""
        if tail is not None and tail.running:
            tail.show_for(seconds, self._emit)
            return
        if tail is not None and tail.fallback and self._follower is not None:
            # No socket: download the whole log at every poll (O(n) each), as before.
            self._emit(self._follower.catch_up(self.hook.get_job_logs(submission_id)), self._follower.offset)
        time.sleep(seconds)

    def _read_to_end(
        self, submission_id: str, tail: LogTailThread | None, *, succeeded: bool = False
    ) -> None:
        """The job is terminal: show the rest of its log (from the socket, or one download)."""
        follower = self._follower
        if tail is None or follower is None or follower.complete:
            return
        if tail.finish(self._emit, succeeded=succeeded):
            return
        self._emit(follower.catch_up(self.hook.get_job_logs(submission_id)), follower.offset)
        self._emit(follower.finish(), follower.offset)

    def _emit(self, lines: list[str], offset: int) -> None:
        for line in lines:
            if line.strip() and not is_result_line(line):
                self.log.info("[ray] %s", line)
        self._log_offset = offset

    def _stop_and_wait(self, submission_id: str, tail: LogTailThread | None = None) -> str | None:
        self.log.warning("Ray job %s passed job_timeout=%ss: stopping it", submission_id, self.job_timeout)
        self.hook.stop_job(submission_id)
        give_up = time.monotonic() + STOP_GRACE_SECONDS
        status = None
        while time.monotonic() < give_up:
            info = self.hook.get_job_info(submission_id)
            status = info["status"] if info else None
            if status in TERMINAL_STATES:
                break
            time.sleep(0.5)
        if status in TERMINAL_STATES:
            self._read_to_end(submission_id, tail)
        return status

    def _stop_quietly(self, submission_id: str, why: str) -> None:
        try:
            info = self.hook.get_job_info(submission_id)
            if info and info["status"] in ACTIVE_STATES:
                self.log.warning("Stopping Ray job %s because %s", submission_id, why)
                self.hook.stop_job(submission_id)
        except Exception as err:
            self.log.error("Could not stop Ray job %s: %s", submission_id, err)

    def _stored_submission_id(self, context: Context) -> str | None:
        store = context.get("task_state_store")
        try:
            value = store.get(self.external_id_key) if store is not None else None
        except Exception:
            value = None
        return str(value) if value else self._submission_id

    def _deadline(self, info: dict[str, Any]) -> float | None:
        if self.job_timeout is None:
            return None
        started = info.get("start_time")
        start = started / 1000.0 if started else time.time()
        return start + float(self.job_timeout)

    def _submission_base(self, context: Context) -> str:
        ti = context["ti"]
        return submission_base(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)

    def _latest_attempt(self, base: str) -> tuple[int, dict[str, Any] | None]:
        attempt, info = 0, None
        while (found := self.hook.get_job_info(attempt_id(base, attempt + 1))) is not None:
            attempt, info = attempt + 1, found
        return attempt, info

    def _runtime_env_for(self, submission_id: str) -> dict[str, Any]:
        # Ray gives a job no way to learn its submission id: hand it over for lineage.
        runtime_env = dict(self.runtime_env or {})
        env_vars = dict(runtime_env.get("env_vars") or {})
        env_vars[SUBMISSION_ID_ENV] = submission_id
        runtime_env["env_vars"] = env_vars
        return runtime_env

    def _job_metadata(self, context: Context, attempt: int) -> dict[str, str]:
        ti = context["ti"]
        metadata = {str(k): str(v) for k, v in (self.metadata or {}).items()}
        metadata.update(
            {
                "airflow_dag_id": ti.dag_id,
                "airflow_task_id": ti.task_id,
                "airflow_run_id": ti.run_id,
                "airflow_map_index": str(ti.map_index),
                "airflow_try_number": str(ti.try_number),
                "airflow_attempt": str(attempt),
            }
        )
        return metadata


def _num(value: float | str | None) -> float | None:
    return float(value) if value not in (None, "") else None
