"""Where the resume hold is 0 and where it keeps its default (ray_operators/triggers/_resume.py):
0 only where dag.test() runs tasks and triggers in one process; every real-scheduler stack keeps
Airflow's configured value, whatever the calling process has."""

from __future__ import annotations

from pathlib import Path

from ray_operators.devstack.demo import RESUME_HOLD_ENV, environment, scheduler_environment
from ray_operators.devstack.standalone import StandaloneAirflow


def test_the_embedded_demo_runs_dag_test_without_the_hold(tmp_path: Path):
    assert environment(tmp_path, tmp_path)[RESUME_HOLD_ENV] == "0"


def test_the_demo_on_the_real_scheduler_keeps_the_default_hold(tmp_path: Path):
    env = scheduler_environment(environment(tmp_path, tmp_path))
    assert RESUME_HOLD_ENV not in env
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"


def test_a_standalone_stack_never_inherits_the_callers_hold(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(RESUME_HOLD_ENV, "0")  # as the test suite's own process has it
    # `make airflow` hands the demo's environment (hold 0, for dag.test) to the stack: dropped.
    stack = StandaloneAirflow(
        home=tmp_path / "home", dags_folder=tmp_path, env=environment(tmp_path, tmp_path)
    )
    env = stack.environment()
    assert RESUME_HOLD_ENV not in env
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.25"
