"""`make demo`'s entry point, at a small scale, against its own embedded Ray head and Airflow home."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_demo_runs_a_real_ray_job_through_airflow_and_reports_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RAY_"))}
    rows = 1000
    done = subprocess.run(
        [sys.executable, "-m", "ray_operators.demo", "--state-dir", str(tmp_path), "--rows", str(rows)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    report = out[out.index("=== Report") :]
    assert "state: success" in report
    assert re.search(r"Ray job af-ray_data_hello-hello_ray_data-\w+-a1 SUCCEEDED", report)
    expected = sum(i * i for i in range(rows))
    assert f"result: {{'rows': {rows}, 'sum_of_squares': {expected}}}" in report
    # Ray Data's own progress reached the task log through the job log.
    assert "[ray] " in out and "Dataset" in out
    # Everything it started is gone: no process still uses its state folder.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""
