"""The real scheduler on the production shape, and the faults a real deployment meets.

One stack for the module: SeaweedFS (S3 + Iceberg REST catalog), a Ray head (drivers only) and a
worker node (every task), and ``airflow standalone`` on PostgreSQL with connections from
``AIRFLOW_CONN_*``. (The cron run and the UI-style REST trigger with ``snapshot_ids`` run in
``test_production_shape.py``, through ``make demo-stack``.)

- ``airflow backfill create`` over three daily intervals: equal row for row to the same spec run
  interval by interval on the embedded default.
- The Ray worker node killed (by pid) in the middle of a preprocess stage and started again: the
  run completes with exactly one commit of exactly the input rows.
- SeaweedFS stopped for several seconds while a sensor waits: the trigger backs off (logged),
  resumes when storage is back, and reports the snapshot committed after the outage.
- The triggerer restarted while a stage is deferred: the stage finishes from the same Ray job, no
  second job, one commit.

Time: about 5 minutes. The production shape is started once for the module (SeaweedFS, two
Ray nodes, `airflow standalone` on PostgreSQL: about 40 s), and each fault needs a real stage
running under the real scheduler when it strikes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest

from ray_operators.contract.lineage import INPUT_PREFIX, RUN_KEY
from ray_operators.devstack.seaweedfs import INSTALL_HINT, find_weed
from tests.conftest import wait_for
from tests.helpers.scheduler_helpers import (
    DAILY,
    EVENTS,
    daily_rows,
    run_backfill_days_in_order,
    spec_folder,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_weed() is None, reason=f"SeaweedFS's `weed` binary not found: {INSTALL_HINT}"),
]
BIG_FILES, BIG_ROWS = 6, 40_000  # the preprocess stages that faults hit read 6 files of 40k rows
#: The Ray connection in this (the test's) process: the session's `ray_default` is another head.
RAY_CONN = "ray_production"

DAILY_SPEC = """
name: {name}
start_date: 2026-03-01
schedule: "@daily"
{connections}
stages:
  - name: prep
    kind: preprocess
    input: {{table: raw.daily, read: current, slice_column: ts}}
    output: {{table: {output}, mode: overwrite, slice_column: day}}
    standardize: [value]
"""

SPECS = {
    "prod_backfill.yaml": DAILY_SPEC.format(name="prod_backfill", connections="", output="feat.daily"),
    "prod_worker_lost.yaml": """
name: prod_worker_lost
start_date: 2026-01-01
schedule: null
retries: 2
retry_delay: 5s
stages:
  - name: prep
    kind: preprocess
    input: raw.big
    output: feat.big_worker_lost
    standardize: [x]
""",
    # The stage sleeps 10 s per batch of 40,000 rows (six batches): the triggerer restarts within a
    # second or two of its trigger's start, long before the job can end (a plain preprocess of
    # raw.big on a warm cluster ended in 3 s, before the restart).
    "prod_triggerer.yaml": """
name: prod_triggerer
start_date: 2026-01-01
schedule: null
stages:
  - name: prep
    kind: preprocess
    input: raw.big
    output: feat.big_triggerer
    transforms:
      - fn: ray_operators.jobs.examples:slow_identity
        batch_size: 40000
        kwargs: {seconds: 10}
    standardize: [x]
""",
    "prod_sense.yaml": """
name: prod_sense
start_date: 2026-01-01
schedule: null
stages:
  - name: wait
    kind: sense
    table: raw.events
    start_from: latest
    poke_interval: 1
    timeout: 900
  - name: prep
    kind: preprocess
    input: raw.events
    output: feat.events
""",
}


class Production:
    def __init__(self, stack, airflow, catalog) -> None:
        self.stack, self.airflow, self.catalog = stack, airflow, catalog

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.airflow.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
        return rows[0][0] if rows else None

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> tuple[str | None, int]:
        rows = self.airflow.query(
            "SELECT state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            dag_id,
            run_id,
            task_id,
        )
        return (rows[0][0], rows[0][1]) if rows else (None, 0)

    def ray_jobs(self, dag_id: str) -> list[dict]:
        from ray_operators.hooks.ray import RayJobsHook

        jobs = RayJobsHook(RAY_CONN).list_jobs()
        return [j for j in jobs if (j.get("metadata") or {}).get("airflow_dag_id") == dag_id]

    def commits(self, table: str, run_key: str) -> list:
        snapshots = self.catalog.load_table(table).metadata.snapshots
        return [s for s in snapshots if (s.summary or {}).get(RUN_KEY) == run_key]

    def logs(self) -> str:
        home = self.airflow.home
        return "\n".join(p.read_text(errors="replace") for p in sorted(home.rglob("*.log*")) if p.is_file())


@pytest.fixture(scope="module")
def production(tmp_path_factory, airflow_postgres):
    from pyiceberg.catalog import load_catalog

    from ray_operators.devstack.stack import ProductionStack
    from ray_operators.devstack.standalone import StandaloneAirflow

    root = tmp_path_factory.mktemp("production")
    folder = spec_folder(root, SPECS)

    stack = ProductionStack(root / "stack").start()
    saved = {k: os.environ.get(k) for k in stack.head.connection_env(RAY_CONN)}
    try:
        os.environ.update(stack.head.connection_env(RAY_CONN))
        catalog = load_catalog(stack.catalog_conn_id, **stack.catalog_properties())
        _seed(catalog)
        airflow = StandaloneAirflow(
            home=root / "airflow",
            dags_folder=folder,
            env=stack.airflow_env(),
            database_url=airflow_postgres("production_scheduler"),
        )
        with airflow:
            airflow.wait_api()
            airflow.wait_parsed({name.removesuffix(".yaml") for name in SPECS})
            assert not airflow.query("SELECT filename, stacktrace FROM import_error")
            yield Production(stack, airflow, catalog)
    finally:
        stack.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _big_batch(index: int) -> pa.Table:
    ids = pa.array(range(index * BIG_ROWS, (index + 1) * BIG_ROWS), pa.int64())
    return pa.table({"id": ids, "x": pa.array([float(i % 1013) for i in range(BIG_ROWS)])}, schema=EVENTS)


def _seed(catalog) -> None:
    for ns in ("raw", "feat"):
        catalog.create_namespace_if_not_exists(ns)
    catalog.create_table("raw.daily", schema=DAILY).append(daily_rows())
    big = catalog.create_table("raw.big", schema=EVENTS)
    for i in range(BIG_FILES):
        big.append(_big_batch(i))
    catalog.create_table("raw.events", schema=EVENTS).append(
        pa.table({"id": [1, 2], "x": [1.0, 2.0]}, schema=EVENTS)
    )


# ---- backfill ------------------------------------------------------------------------------------


def test_backfill_over_three_intervals_equals_the_embedded_default(
    production, airflow_db, ray_head, iceberg, tmp_path
):
    airflow, catalog = production.airflow, production.catalog
    done = airflow.cli(
        "backfill",
        "create",
        "--dag-id",
        "prod_backfill",
        "--from-date",
        "2026-03-01",
        "--to-date",
        "2026-03-03",
        "--max-active-runs",
        "1",  # in order: the first interval fits the preprocess state, as a sequential run does
        check=False,
    )
    assert done.returncode == 0, done.stderr

    def finished():
        rows = airflow.query(
            "SELECT run_id, state FROM dag_run WHERE dag_id = 'prod_backfill' AND run_type = 'backfill'"
        )
        return rows if len(rows) == 3 and all(r[1] in ("success", "failed") for r in rows) else None

    runs = wait_for(finished, 600, 2, f"the backfill ({airflow.log_path})")
    assert all(state == "success" for _, state in runs), runs

    # The same spec, interval by interval, on the embedded default: SqlCatalog, one Ray head.
    iceberg.catalog.create_namespace_if_not_exists("raw")
    iceberg.catalog.create_namespace_if_not_exists("feat")
    iceberg.catalog.create_table("raw.daily", schema=DAILY).append(daily_rows())
    spec = DAILY_SPEC.format(
        name="embedded_daily",
        connections=f"connections: {{iceberg_conn_id: {iceberg.conn_id}}}",
        output="feat.daily",
    )
    run_backfill_days_in_order("embedded_daily", spec_folder(tmp_path, {"embedded_daily.yaml": spec}))

    columns = ["ts", "value", "day"]
    production_rows = table_rows(catalog, "feat.daily", columns)
    assert production_rows == table_rows(iceberg.catalog, "feat.daily", columns)
    assert [r[2] for r in production_rows] == ["2026-03-01"] * 5 + ["2026-03-02"] * 5 + ["2026-03-03"] * 5
    # Each interval committed once, keyed by its interval, reading the REST catalog's snapshot.
    keys = [
        s.summary.get(RUN_KEY)
        for s in catalog.load_table("feat.daily").metadata.snapshots
        if "interval=2026-03" in (s.summary or {}).get(RUN_KEY, "")
    ]
    assert len(keys) == len(set(keys)) == 3, keys


# ---- faults --------------------------------------------------------------------------------------


def _input_rows() -> int:
    return BIG_FILES * BIG_ROWS


def _running_job(production: Production, dag_id: str, timeout: float = 300) -> dict:
    from ray_operators.hooks.ray import RayJobsHook

    hook = RayJobsHook(RAY_CONN)

    def executing():
        for job in production.ray_jobs(dag_id):
            if job.get("status") == "RUNNING" and "Starting execution" in hook.get_job_logs(
                job["submission_id"]
            ):
                return job
        return None

    return wait_for(executing, timeout, 0.5, f"a Ray job of {dag_id} executing Ray Data work")


def _check_one_commit(production: Production, dag_id: str, run_id: str, table: str) -> list:
    """The run succeeded and wrote the input once: one commit with its run key, every row once."""
    assert production.run_state(dag_id, run_id) == "success"
    data = production.catalog.load_table(table).scan().to_arrow()
    ids = data["id"].to_pylist()
    assert len(ids) == _input_rows() and len(set(ids)) == _input_rows()
    keys = {
        (s.summary or {}).get(RUN_KEY)
        for s in production.catalog.load_table(table).metadata.snapshots
        if (s.summary or {}).get(RUN_KEY, "").startswith(f"{dag_id}/prep/")
        and "/" not in (s.summary or {}).get(RUN_KEY, "").removeprefix(f"{dag_id}/prep/")
    }
    assert len(keys) == 1, keys
    (key,) = keys
    return production.commits(table, key)


def test_worker_node_lost_mid_preprocess_commits_exactly_once(production):
    airflow, stack = production.airflow, production.stack
    run_id = airflow.trigger("prod_worker_lost")
    job = _running_job(production, "prod_worker_lost")
    lost = stack.worker.node_id
    stack.worker.kill()  # SIGKILL to the node's process group: raylet, workers, object store
    # The kill landed inside the stage: its Ray job had not finished.
    (during,) = [
        j for j in production.ray_jobs("prod_worker_lost") if j["submission_id"] == job["submission_id"]
    ]
    assert during["status"] == "RUNNING", during
    # The scenario, not a wait for an event: the lost node stays away a few seconds (a replacement
    # node takes at least that long to come up), so the job meets a cluster without a worker.
    time.sleep(3)
    joined = stack.start_worker().node_id
    assert lost and joined and joined != lost
    state = airflow.wait_run("prod_worker_lost", run_id, timeout=900)
    assert state == "success", production.logs()[-5000:]
    commits = _check_one_commit(production, "prod_worker_lost", run_id, "feat.big_worker_lost")
    assert len(commits) == 1, [c.summary for c in commits]
    # Whether Ray re-ran the lost tasks inside the job or the task's retry submitted a new attempt,
    # every attempt is a job of this task instance, and only one of them committed.
    jobs = production.ray_jobs("prod_worker_lost")
    assert job["submission_id"] in {j["submission_id"] for j in jobs}
    assert [j["status"] for j in jobs].count("SUCCEEDED") == 1, jobs
    # Ray Data had started executing before the kill (see _running_job), and the job still had
    # work for a worker after it: tasks of the successful job ran on the node that joined later.
    # (Attempts that were running on the killed node are not listed: their events died with it.)
    ((value,),) = airflow.query(
        "SELECT value FROM xcom WHERE dag_id = 'prod_worker_lost' AND run_id = ? AND task_id = 'prep' "
        "AND key = 'return_value'",
        run_id,
    )
    nodes = set(json.loads(value)["result"]["ray"]["task_nodes"])
    assert f"worker:{joined[:8]}" in nodes, nodes
    _, tries = production.task_state("prod_worker_lost", run_id, "prep")
    if len(jobs) > 1:  # the job failed and the task's retry submitted a new attempt
        assert tries > 1, (tries, jobs)
    print(f"worker lost: {len(jobs)} Ray job(s), task tries {tries}, task nodes {sorted(nodes)}")


def test_storage_stopped_while_a_sensor_waits(production):
    airflow, stack, catalog = production.airflow, production.stack, production.catalog
    run_id = airflow.trigger("prod_sense")
    wait_for(
        lambda: production.task_state("prod_sense", run_id, "wait")[0] == "deferred",
        300,
        1,
        "the sensor to defer",
    )
    trigger_logs = airflow.home / "logs" / "dag_id=prod_sense" / f"run_id={run_id}" / "task_id=wait"

    def trigger_log() -> str:
        return "\n".join(p.read_text(errors="replace") for p in trigger_logs.glob("attempt=1.log.trigger.*"))

    # The trigger's first poll succeeded (it logs the snapshot it watches after) before the outage.
    wait_for(lambda: "Watching raw.events@main after snapshot" in trigger_log(), 120, 0.2, "the first poll")
    stack.storage.stop()
    try:
        # Polls fail: the trigger backs off (2 s, 4 s, 8 s, ...). Two failed polls in a row, seen in
        # its log, are the outage the test needs; storage comes back while it backs off.
        wait_for(lambda: "Polling raw.events failed (2/" in trigger_log(), 120, 0.2, "two failed polls")
    finally:
        stack.storage.start()
    assert production.task_state("prod_sense", run_id, "wait")[0] == "deferred"
    events = catalog.load_table("raw.events")
    events.append(pa.table({"id": [7, 8, 9], "x": [7.0, 8.0, 9.0]}, schema=EVENTS))
    committed = catalog.load_table("raw.events").metadata.current_snapshot_id

    assert airflow.wait_run("prod_sense", run_id, timeout=600) == "success", production.logs()[-5000:]
    assert "Polling raw.events failed" in production.logs()
    feat = catalog.load_table("feat.events")
    assert sorted(feat.scan().to_arrow()["id"].to_pylist()) == [7, 8, 9]
    assert feat.metadata.snapshots[-1].summary[INPUT_PREFIX + "raw.events"] == str(committed)


def test_triggerer_restart_during_a_deferred_stage_runs_one_job(production):
    airflow = production.airflow
    run_id = airflow.trigger("prod_triggerer")
    wait_for(
        lambda: production.task_state("prod_triggerer", run_id, "prep")[0] == "deferred",
        300,
        0.5,
        "the stage to defer on its Ray job",
    )
    (job,) = production.ray_jobs("prod_triggerer")
    # Restart once the first triggerer runs the stage's trigger: Airflow writes one trigger log per
    # triggerer job that runs it (``attempt=1.log.trigger.<job id>.log``).
    task_logs = airflow.home / "logs" / "dag_id=prod_triggerer" / f"run_id={run_id}" / "task_id=prep"
    first = wait_for(
        lambda: list(task_logs.glob("attempt=1.log.trigger.*.log")), 120, 0.2, "the trigger to run"
    )
    old = airflow.component_pids("triggerer")
    new = airflow.restart_triggerer()
    assert new not in old
    # The restart fell inside the stage: its job had not finished, the task was still deferred.
    (still,) = production.ray_jobs("prod_triggerer")
    assert still["status"] in ("PENDING", "RUNNING"), still
    assert production.task_state("prod_triggerer", run_id, "prep")[0] == "deferred"
    assert airflow.wait_run("prod_triggerer", run_id, timeout=900) == "success", production.logs()[-5000:]
    jobs = production.ray_jobs("prod_triggerer")
    assert [j["submission_id"] for j in jobs] == [job["submission_id"]], jobs
    assert jobs[0]["status"] == "SUCCEEDED"
    commits = _check_one_commit(production, "prod_triggerer", run_id, "feat.big_triggerer")
    assert len(commits) == 1
    # Two triggerers ran the stage's trigger: the first until its restart, the new one to the end.
    after = list(task_logs.glob("attempt=1.log.trigger.*.log"))
    assert len(after) == 2 and set(first) < set(after), list(task_logs.iterdir())
