"""StandaloneAirflow's environment (ray_operators/devstack/standalone.py): short loop periods, and
never the caller's resume hold: a real scheduler needs it (ray_operators/triggers/_resume.py)."""

from __future__ import annotations

from pathlib import Path

from ray_operators.devstack.demo import environment
from ray_operators.devstack.standalone import RESUME_HOLD_ENV, StandaloneAirflow


def test_a_standalone_stack_never_inherits_the_callers_hold(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(RESUME_HOLD_ENV, "0")  # as the test suite's own process has it
    # `make airflow` hands the demo's environment (hold 0, for dag.test) to the stack: dropped.
    stack = StandaloneAirflow(
        home=tmp_path / "home", dags_folder=tmp_path, env=environment(tmp_path, tmp_path)
    )
    env = stack.environment()
    assert RESUME_HOLD_ENV not in env
    assert env["AIRFLOW__DATABASE__CHECK_MIGRATIONS"] == "False"
    assert env["AIRFLOW__WORKERS__MISSING_DAG_RETRY_DELAY"] == "2"
