"""Run a Ray job on the test head and wait for it: the tests that submit job scripts share this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import wait_for

#: Test job scripts (shipped with ``runtime_env["working_dir"]``).
TEST_JOBS = Path(__file__).resolve().parents[1] / "jobs"


def run_job(
    hook, entrypoint: str, submission_id: str, *, working_dir: Path | None = TEST_JOBS, timeout: float = 300
) -> str:
    """Submit, wait until it ends, require SUCCEEDED (the log tail in the message); the logs."""
    kwargs: dict[str, Any] = {"runtime_env": {"working_dir": str(working_dir)}} if working_dir else {}
    sid = hook.submit_job(entrypoint=entrypoint, submission_id=submission_id, **kwargs)
    wait_for(
        lambda: hook.get_job_info(sid)["status"] in ("SUCCEEDED", "FAILED"), timeout, interval=1, what=sid
    )
    logs = hook.get_job_logs(sid)
    assert hook.get_job_info(sid)["status"] == "SUCCEEDED", logs[-3000:]
    return logs
