"""The demo's environments (ray_operators/devstack/demo.py): the resume hold is 0 only where
dag.test() runs tasks and triggers in one process; the real scheduler keeps its default."""

from __future__ import annotations

from pathlib import Path

from ray_operators.devstack.demo import RESUME_HOLD_ENV, environment, scheduler_environment


def test_the_embedded_demo_runs_dag_test_without_the_hold(tmp_path: Path):
    assert environment(tmp_path, tmp_path)[RESUME_HOLD_ENV] == "0"


def test_the_demo_on_the_real_scheduler_keeps_the_default_hold(tmp_path: Path):
    env = scheduler_environment(environment(tmp_path, tmp_path))
    assert RESUME_HOLD_ENV not in env
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"
