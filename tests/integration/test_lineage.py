"""Lineage made visible, on real pipeline runs (``airflow dags test``, a real Ray head, a real
SqlCatalog):

- OpenLineage events of the Ray stages and the sensor, with the file transport: the exact datasets
  (Iceberg tables named by their location with a ``TABLE`` symlink, the snapshot read or written as
  the version, the schema) and the ``rayLakehouse`` run facet, for a pipeline that succeeds and one
  whose stage fails. The Spark curate operator's events are in ``test_spark_curate.py``.
- The Airflow UI's lineage views (the plugin's FastAPI app in Airflow's real API server app): who
  may see them, and what they show for those runs. The browser test is in ``test_demo.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ray_operators.contract.lineage import RUN_KEY, SUBMISSION_ID
from ray_operators.contract.run_key import snapshots_identity
from tests.helpers.iceberg_helpers import connection_env, open_catalog
from tests.helpers.openlineage_helpers import (
    dags_test,
    datasets,
    last_run,
    read_events,
    strip_producers,
    table_dataset,
    task_event,
    transport_env,
)
from tests.helpers.scheduler_helpers import spec_folder

pytestmark = pytest.mark.integration
DATE = "2026-06-05T00:00:00+00:00"
CONN_ID = "iceberg_lineage"
HEADER = """
name: {name}
start_date: 2026-01-01
schedule: null
retries: 0
connections: {{iceberg_conn_id: iceberg_lineage}}
stages:
"""
SENSE_THEN_PREPROCESS = """
  - name: sense
    kind: sense
    table: curated.ol
    start_from: incremental
    poke_interval: 1
    timeout: 300
  - name: features
    kind: preprocess
    input: curated.ol
    output: {output}
    standardize: [{column}]
"""
SPECS = {
    # curate -> sense -> preprocess: succeeds.
    "ol_chain.yaml": HEADER.format(name="ol_chain")
    + """
  - name: curate_csv
    kind: curate
    raw_paths: ${TEST_RAW_ROOT}
    format: csv
    schema: {row_id: long, x: double, label: long}
    output: curated.ol"""
    + SENSE_THEN_PREPROCESS.format(output="features.ol", column="x"),
    # sense -> preprocess of a column that does not exist: the stage fails before writing.
    "ol_broken.yaml": HEADER.format(name="ol_broken")
    + SENSE_THEN_PREPROCESS.format(output="features.ol_broken", column="no_such_column"),
}


@dataclass
class Runs:
    catalog: Any
    raw: Path
    events: list[dict[str, Any]]
    outputs: dict[str, str]
    #: ``dag_id -> (run_id, state)`` in Airflow's metadata database.
    dag_runs: dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def runs(airflow_db, ray_head, tmp_path_factory) -> Runs:
    """``ol_chain`` (curate -> sense -> preprocess) then ``ol_broken`` (its preprocess fails),
    each under ``airflow dags test`` with OpenLineage's file transport."""
    tmp = tmp_path_factory.mktemp("lineage")
    raw = tmp / "raw"
    raw.mkdir()
    rows = ["row_id,x,label"] + [f"{i},{i * 0.5},{i % 2}" for i in range(40)] + ["40,not-a-number,1"]
    (raw / "batch-1.csv").write_text("\n".join(rows) + "\n")
    events_file = tmp / "events.jsonl"
    saved = dict(os.environ)
    os.environ.update(connection_env(CONN_ID, tmp / "lake"))
    catalog = open_catalog(tmp / "lake", CONN_ID)
    env = {
        **transport_env(events_file),
        "AIRFLOW__CORE__DAGS_FOLDER": str(spec_folder(tmp, SPECS)),
        "TEST_RAW_ROOT": str(raw),
    }
    try:
        outputs = {}
        for dag_id in ("ol_chain", "ol_broken"):
            done = dags_test(dag_id, DATE, env)
            outputs[dag_id] = done.stdout + done.stderr
        yield Runs(catalog, raw, read_events(events_file), outputs, {d: last_run(d) for d in outputs})
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_openlineage_events_name_exactly_what_each_task_read_and_wrote(runs, hook):
    catalog, raw, events = runs.catalog, runs.raw, runs.events
    assert runs.dag_runs["ol_chain"][1] == "success", runs.outputs["ol_chain"][-4000:]
    assert runs.dag_runs["ol_broken"][1] == "failed", runs.outputs["ol_broken"][-4000:]
    curated = catalog.load_table("curated.ol")
    quarantine = catalog.load_table("curated.ol_quarantine")
    features = catalog.load_table("features.ol")
    curated_id = curated.metadata.current_snapshot_id
    feature_snap = features.current_snapshot()

    # Curation: the raw folder it claimed in, the curated and quarantine commits out.
    curate = task_event(events, "ol_chain", "curate_csv", "COMPLETE")
    assert datasets(curate, "inputs") == [{"namespace": "file", "name": str(raw)}]
    assert datasets(curate, "outputs") == sorted(
        [
            table_dataset(catalog, "curated.ol", curated_id),
            table_dataset(catalog, "curated.ol_quarantine", quarantine.metadata.current_snapshot_id),
        ],
        key=lambda d: (d["namespace"], d["name"]),
    )
    curate_facet = strip_producers(curate["run"]["facets"]["rayLakehouse"])
    curated_summary = curated.current_snapshot().summary
    assert curate_facet == {
        "stage": "curate",
        "engine": "ray",
        "submissionId": curated_summary[SUBMISSION_ID],
        "status": "SUCCEEDED",
        "dashboardUrl": hook.job_url(curated_summary[SUBMISSION_ID]),
        "runKey": curated_summary[RUN_KEY],
    }

    # The sensor: the table at the snapshot it found.
    sense = task_event(events, "ol_chain", "sense", "COMPLETE")
    assert datasets(sense, "inputs") == [table_dataset(catalog, "curated.ol", curated_id)]
    assert datasets(sense, "outputs") == []

    # Preprocess: exactly the sensed snapshot in, the feature commit out, the fitted state.
    pre = task_event(events, "ol_chain", "features", "COMPLETE")
    assert datasets(pre, "inputs") == [table_dataset(catalog, "curated.ol", curated_id)]
    assert datasets(pre, "outputs") == [table_dataset(catalog, "features.ol", feature_snap.snapshot_id)]
    facet = strip_producers(pre["run"]["facets"]["rayLakehouse"])
    submission = feature_snap.summary[SUBMISSION_ID]
    assert facet == {
        "stage": "preprocess",
        "engine": "ray",
        "submissionId": submission,
        "status": "SUCCEEDED",
        "dashboardUrl": hook.job_url(submission),
        "runKey": feature_snap.summary[RUN_KEY],
        "fittedStateVersion": int(feature_snap.summary["lakehouse.preprocess.state-version"]),
    }
    assert not [e for e in events if e["eventType"] == "FAIL" and e["job"]["name"].startswith("ol_chain")]

    # A stage that fails: the same input, the output it would have written (never created: named
    # by its catalog), no version, and the failed Ray job.
    assert datasets(task_event(events, "ol_broken", "sense", "COMPLETE"), "inputs") == [
        table_dataset(catalog, "curated.ol", curated_id)
    ]
    fail = task_event(events, "ol_broken", "features", "FAIL")
    assert datasets(fail, "inputs") == [table_dataset(catalog, "curated.ol", curated_id)]
    assert datasets(fail, "outputs") == [
        {
            "namespace": catalog.properties["uri"],
            "name": "features.ol_broken",
            "facets": {
                "symlinks": {
                    "identifiers": [
                        {
                            "namespace": catalog.properties["uri"],
                            "name": "features.ol_broken",
                            "type": "TABLE",
                        }
                    ]
                }
            },
        }
    ]
    facet = strip_producers(fail["run"]["facets"]["rayLakehouse"])
    assert facet["status"] == "FAILED" and facet["stage"] == "preprocess" and facet["engine"] == "ray"
    assert hook.get_job_info(facet["submissionId"])["status"] == "FAILED"
    assert facet["dashboardUrl"] == hook.job_url(facet["submissionId"])
    # The run key the rule gives for the snapshots the sensor handed over (every one of curated.ol).
    sensed = [snap.snapshot_id for snap in catalog.load_table("curated.ol").metadata.snapshots]
    assert facet["runKey"] == f"ol_broken/features/{snapshots_identity(sensed)}"
    assert "no_such_column" in strip_producers(fail["run"]["facets"])["errorMessage"]["message"]
    assert not catalog.table_exists("features.ol_broken")


# ---- the Airflow UI's lineage views ---------------------------------------------------------

ROUTES = ("/lineage", "/lineage/run", "/api/lineage", "/api/lineage/run")


@pytest.fixture(scope="module")
def api(runs):
    """Airflow's real API server app (plugins mounted, the simple auth manager), in process."""
    import secrets

    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    # The API server signs its tokens with [api_auth] jwt_secret. This process may have read its
    # configuration before `airflow db migrate` wrote one into the test home: set it explicitly.
    saved = os.environ.get("AIRFLOW__API_AUTH__JWT_SECRET")
    os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = secrets.token_urlsafe(48)
    try:
        with TestClient(create_app()) as client:
            yield client
    finally:
        if saved is None:
            os.environ.pop("AIRFLOW__API_AUTH__JWT_SECRET", None)
        else:
            os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = saved


def _token(client, user: str = "admin") -> str:
    from airflow.api_fastapi.app import get_auth_manager

    passwords = json.loads(Path(get_auth_manager().get_generated_password_file()).read_text())
    got = client.post("/auth/token", json={"username": user, "password": passwords[user]})
    assert got.status_code == 201, got.text
    return got.json()["access_token"]


def _get(client, route: str, token: str | None, **params: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(f"/ray-lakehouse{route}", params=params, headers=headers)


def test_every_lineage_route_requires_an_authenticated_user(api, runs):
    run_id = runs.dag_runs["ol_chain"][0]
    for route in ROUTES:
        anonymous = _get(api, route, None, dag_id="ol_chain", run_id=run_id)
        assert anonymous.status_code == 401, (route, anonymous.text)
        assert "curated.ol" not in anonymous.text
        forged = _get(api, route, "not-a-token", dag_id="ol_chain", run_id=run_id)
        assert forged.status_code == 403, (route, forged.text)
    # The UI's session cookie works as the header does (the views open in the UI's iframes).
    api.cookies.set("_token", _token(api))
    try:
        assert _get(api, "/lineage", None).status_code == 200
    finally:
        api.cookies.clear()


def test_the_run_view_shows_what_the_run_read_and_wrote_with_its_ray_jobs(api, runs, hook):
    catalog = runs.catalog
    run_id = runs.dag_runs["ol_chain"][0]
    token = _token(api)
    got = _get(api, "/api/lineage/run", token, dag_id="ol_chain", run_id=run_id).json()
    wrote = {(w["table"], w["snapshot_id"]): w for w in got["wrote"]}
    for table in ("curated.ol", "curated.ol_quarantine", "features.ol"):
        head = catalog.load_table(table).current_snapshot()
        record = wrote[(table, head.snapshot_id)]
        assert (record["dag_id"], record["run_id"]) == ("ol_chain", run_id)
        assert record["ray_job_url"] == hook.job_url(head.summary[SUBMISSION_ID])
    assert {w["table"] for w in got["wrote"]} <= {
        "curated.ol",
        "curated.ol_quarantine",
        "curated.ol_processing",
        "features.ol",
    }
    curated_id = catalog.load_table("curated.ol").metadata.current_snapshot_id
    assert [(r["table"], r["snapshot_id"], r["writer"]["task_id"]) for r in got["read"]] == [
        ("curated.ol", curated_id, "curate_csv")
    ]
    assert got["raw"] == [str(runs.raw)] and got["errors"] == {}

    page = _get(api, "/lineage/run", token, dag_id="ol_chain", run_id=run_id)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    features_id = catalog.load_table("features.ol").metadata.current_snapshot_id
    assert f'data-table="features.ol" data-snapshot="{features_id}"' in html
    assert (
        f'data-from="{CONN_ID}:curated.ol@{curated_id}" data-to="{CONN_ID}:features.ol@{features_id}"' in html
    )
    assert hook.job_url(catalog.load_table("features.ol").current_snapshot().summary[SUBMISSION_ID]) in html
    assert f'href="/dags/ol_chain/runs/{run_id.replace(":", "%3A").replace("+", "%2B")}"' in html

    # The failed run committed nothing: the view says so.
    broken = _get(api, "/lineage/run", token, dag_id="ol_broken", run_id=runs.dag_runs["ol_broken"][0])
    assert broken.status_code == 200 and "This run committed no snapshot." in broken.text


def test_the_table_view_lists_every_table_newest_first(api, runs):
    catalog = runs.catalog
    token = _token(api)
    snapshots = _get(api, "/api/lineage", token).json()["snapshots"]
    mine = [s for s in snapshots if s["catalog"] == CONN_ID]
    for table in ("curated.ol", "curated.ol_quarantine", "curated.ol_processing", "features.ol"):
        listed = [s["snapshot_id"] for s in mine if s["table"] == table]
        history = sorted(
            catalog.load_table(table).metadata.snapshots, key=lambda s: s.sequence_number, reverse=True
        )
        assert listed == [s.snapshot_id for s in history], table
    html = _get(api, "/lineage", token).text
    assert "<h1>Iceberg lineage</h1>" in html and "<svg" in html
    assert html.index(">curated.ol ") < html.index(">features.ol ")


def test_a_user_who_may_not_read_the_dag_gets_403_and_sees_no_writer(api, runs, monkeypatch):
    """The simple auth manager lets every role read every DAG: a per-DAG refusal is what a real
    auth manager (FAB, Keycloak) returns, stood in for here."""
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    allowed = manager.is_authorized_dag

    def refuse_ol_chain(*, method, user, access_entity=None, details=None):
        if details is not None and details.id == "ol_chain":
            return False
        return allowed(method=method, user=user, access_entity=access_entity, details=details)

    monkeypatch.setattr(manager, "is_authorized_dag", refuse_ol_chain)
    token = _token(api)
    run_id = runs.dag_runs["ol_chain"][0]
    for route in ("/lineage/run", "/api/lineage/run"):
        assert _get(api, route, token, dag_id="ol_chain", run_id=run_id).status_code == 403
    snapshots = _get(api, "/api/lineage", token).json()["snapshots"]
    features = [s for s in snapshots if s["table"] == "features.ol"]
    assert features and all(
        s["hidden"] and s["dag_id"] is None and s["ray_job_url"] is None for s in features
    )
    assert "ol_chain" not in json.dumps(features)
