"""The standalone stack's environment (no processes started)."""

from __future__ import annotations

import ast
import subprocess
import sys

from ray_operators.standalone import StandaloneAirflow


def test_stack_processes_queue_for_the_sqlite_write_lock(tmp_path):
    env = StandaloneAirflow(home=tmp_path / "home", dags_folder=tmp_path / "dags").environment()
    code = (
        "from airflow.configuration import conf; "
        "print(repr(conf.getimport('database', 'sql_alchemy_connect_args')))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    args = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert args["timeout"] >= 60  # pysqlite's default is 5 s
    assert args["isolation_level"] == "IMMEDIATE"  # writers take the lock before reading
