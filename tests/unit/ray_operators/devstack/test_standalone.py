"""StandaloneAirflow's environment (ray_operators/devstack/standalone.py): short loop periods, and
never the caller's resume hold: a real scheduler needs it (ray_operators/triggers/_resume.py)."""

from __future__ import annotations

from pathlib import Path

from ray_operators.devstack.demo import environment, without_dag_test_hold
from ray_operators.devstack.standalone import RESUME_HOLD_ENV, StandaloneAirflow


def test_a_standalone_stack_never_inherits_the_callers_hold(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(RESUME_HOLD_ENV, "0")  # as the test suite's own process has it
    # `make airflow` hands the demo's environment (hold 0, for dag.test) to the stack without it.
    stack = StandaloneAirflow(
        home=tmp_path / "home",
        dags_folder=tmp_path,
        env=without_dag_test_hold(environment(tmp_path, tmp_path)),
    )
    env = stack.environment()
    assert RESUME_HOLD_ENV not in env
    assert env["AIRFLOW__DATABASE__CHECK_MIGRATIONS"] == "False"
    assert env["AIRFLOW__WORKERS__MISSING_DAG_RETRY_DELAY"] == "2"
    assert env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"] == "30"


def test_a_hold_given_to_the_stack_is_kept(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(RESUME_HOLD_ENV, "0")
    stack = StandaloneAirflow(home=tmp_path / "home", dags_folder=tmp_path, env={RESUME_HOLD_ENV: "3"})
    assert stack.environment()[RESUME_HOLD_ENV] == "3"
