"""`make demo`'s entry point at a small scale, twice, against its own Ray head and Airflow home.

The report's numbers are checked against the tables, and the second run must read only the new
snapshot. Also `make airflow`'s entry point: the real stack serves the UI with the pipelines.

Time: about 4 minutes. Each test runs a command users run, end to end, in its own process:
`make demo` twice (once a session, shared with test_production_shape.py; the second run is its
Spark variant, a JVM, where Spark can run), and `make airflow` with a real browser on the state of
the two demo runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from ray_operators.spark import runtime
from tests.helpers.demo_runs import ROWS, clean_env, demo_catalog

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _stage(report: dict, dag_id: str, task_id: str) -> dict:
    return next(s for s in report["stages"] if s["dag_id"] == dag_id and s["task_id"] == task_id)


def test_demo_runs_the_lakehouse_twice_and_the_second_run_reads_only_the_new_batch(demo_runs):
    """The two runs are the session's (tests/helpers/demo_runs.py), on one state folder."""
    first, stdout = demo_runs.first, demo_runs.first_stdout
    assert "=== Lakehouse demo report (raw batch 1" in stdout
    assert [r["state"] for r in first["runs"]] == ["success"] * 3
    bad_1 = first["batch"]["samples_bad"]
    assert bad_1 > 0

    # Curation: every good row typed, every bad one quarantined, as the generator wrote them (the
    # tables' rows read from the catalog after the first run).
    curate = _stage(first, "curate_samples", "curate_csv")
    assert curate["rows_out"] == ROWS - bad_1 == demo_runs.first_rows["curated.samples"]
    assert curate["quarantined"] == bad_1 == demo_runs.first_rows["curated.samples_quarantine"]
    logs = _stage(first, "spark_logs", "curate_logs")
    assert logs["rows_out"] == first["batch"]["logs"]["good"]
    assert logs["quarantined"] == first["batch"]["logs"]["bad_total"]
    assert first["tables"]["logs.spark"] == first["batch"]["logs"]["good"]

    # The lakehouse: sensed snapshot -> features -> model -> one prediction per feature row.
    sense = _stage(first, "lakehouse", "sense_curated")
    assert sense["snapshot_ids"] == [curate["snapshot_id"]]
    prep = _stage(first, "lakehouse", "preprocess")
    assert prep["rows_in"] == prep["rows_out"] == ROWS - bad_1
    train = _stage(first, "lakehouse", "train")
    assert train["metrics"]["holdout_accuracy"] > 0.75  # chance is 0.5
    assert 0 < train["metrics"]["loss"] < 1  # a number (an empty batch once made it NaN)
    infer = _stage(first, "lakehouse", "infer")
    assert infer["rows_out"] == ROWS - bad_1 == first["tables"]["ml.predictions"]
    for stage in (curate, logs, prep, train, infer):
        assert stage["ray_job"].startswith("af-") and stage["status"] == "SUCCEEDED" and stage["seconds"] > 0

    # Lineage, read from the snapshot summaries: predictions <- features <- curated <- raw files.
    hops = [(h["table"], h["snapshot_id"]) for h in first["lineage"]]
    assert hops == [
        ("ml.predictions", infer["snapshot_id"]),
        ("features.samples", prep["snapshot_id"]),
        ("curated.samples", curate["snapshot_id"]),
    ]
    assert first["lineage"][0]["inputs"]["features.samples"] == str(prep["snapshot_id"])
    assert first["lineage"][1]["inputs"]["curated.samples"] == str(curate["snapshot_id"])
    assert first["lineage"][2]["inputs"]["raw"].endswith("raw/samples")
    assert "<- curated.samples@" in stdout and "holdout accuracy" in stdout
    # Progress while it ran: each step with its time, each stage as it started and ended, and the
    # stage jobs' own log lines as they came.
    assert re.search(r"^==> \[ *\d+\.\ds\] Running pipeline lakehouse", stdout, re.M)
    for task in ("spark_logs.curate_logs", "curate_samples.curate_csv", "lakehouse.train", "lakehouse.infer"):
        assert f"{task}: started" in stdout, task
        assert re.search(rf"{re.escape(task)}: ended after \d+\.\ds", stdout), task
    assert "[ray] stage train timings (s)" in stdout and "[ray] stage preprocess result" in stdout

    # Second run: a new batch; only its files and its curated snapshot are read.
    second, stdout = demo_runs.second, demo_runs.second_stdout
    assert "raw batch 2" in stdout
    bad_2 = second["batch"]["samples_bad"]
    curate_2 = _stage(second, "curate_samples", "curate_csv")
    assert curate_2["rows_out"] == ROWS - bad_2  # the first file was not read again
    sense_2 = _stage(second, "lakehouse", "sense_curated")
    assert sense_2["snapshot_ids"] == [curate_2["snapshot_id"]]  # only the new snapshot
    prep_2 = _stage(second, "lakehouse", "preprocess")
    assert prep_2["rows_in"] == ROWS - bad_2 and prep_2["incremental_files"] == 1
    assert second["tables"]["curated.samples"] == 2 * ROWS - bad_1 - bad_2
    assert second["tables"]["features.samples"] == 2 * ROWS - bad_1 - bad_2
    assert _stage(second, "lakehouse", "train")["model"] == "samples_clf v2"
    # New Spark-log folders are curated too (the first run's are done), and the new model scores
    # exactly the features this run appended.
    logs_2 = _stage(second, "spark_logs", "curate_logs")
    assert logs_2["rows_out"] == second["batch"]["logs"]["good"] and not logs_2["skipped"]
    assert second["tables"]["logs.spark"] == first["batch"]["logs"]["good"] + second["batch"]["logs"]["good"]
    assert _stage(second, "lakehouse", "infer")["rows_out"] == ROWS - bad_2
    assert second["tables"]["ml.predictions"] == 2 * ROWS - bad_1 - bad_2
    # Everything the runs started was gone when the second ended: no process used their state folder.
    assert demo_runs.leftovers.strip() == ""


@pytest.mark.skipif(runtime.missing() is not None, reason=f"Spark cannot run here: {runtime.missing()}")
def test_demo_with_the_spark_curate_engine(demo_runs):
    """`make demo DEMO_ARGS="--curate-engine spark"`: Spark curates the logs, the rest runs on Ray.
    It is the session's second run (tests/helpers/demo_runs.py), on the state the Ray engine
    curated first: Spark curates the new batch's folders alone, none of the first run's again."""
    from ray_operators.contract.lineage import ENGINE, SPARK_APP_ID

    assert demo_runs.second_engine == "spark"
    report, stdout = demo_runs.second, demo_runs.second_stdout
    first_logs = demo_runs.first["batch"]["logs"]
    assert _stage(demo_runs.first, "spark_logs", "curate_logs")["engine"] == "ray"
    assert "spark_logs curates on Spark" in stdout
    assert [r["state"] for r in report["runs"]] == ["success"] * 3
    logs_stage = _stage(report, "spark_logs", "curate_logs")
    assert logs_stage["engine"] == "spark" and logs_stage["ray_job"].startswith("spark: local-")
    batch = report["batch"]["logs"]
    assert batch["good"] > 0 and batch["bad_total"] > 0
    assert logs_stage["rows_out"] == batch["good"]
    assert logs_stage["quarantined"] == batch["bad_total"]
    # The tables hold each run's rows once: the first run's (Ray) and this one's (Spark).
    assert report["tables"]["logs.spark"] == first_logs["good"] + batch["good"]
    assert report["tables"]["logs.spark_quarantine"] == first_logs["bad_total"] + batch["bad_total"]
    # The head of logs.spark right after the run (test_make_airflow's scheduler may curate later).
    head = demo_runs.second_logs_head
    assert head[ENGINE] == "spark" and logs_stage["ray_job"] == f"spark: {head[SPARK_APP_ID]}"
    # The shipped spec is untouched: the demo curated with a generated copy.
    assert "engine" not in (REPO / "dags" / "pipelines" / "spark_logs.yaml").read_text()


def test_make_airflow_after_make_demo_shows_the_lineage_in_the_ui(tmp_path, demo_runs):
    """`make demo`, then `make airflow` on the same state, as a user runs them: the UI serves the
    pipelines, and a logged-in browser sees the Iceberg lineage page (the demo's tables and graph)
    and the lineage tab of a real run triggered in this Airflow. The state is the session's two
    demo runs (tests/helpers/demo_runs.py)."""
    browser = _chromium()
    state, report = demo_runs.state, demo_runs.second
    log = tmp_path / "make-airflow.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ray_operators.devstack.airflow_local", "--state-dir", str(state)],
            cwd=REPO,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while "Ctrl-C stops everything." not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[
                -5000:
            ]
            time.sleep(0.25)
        out = log.read_text()
        url, password = re.search(
            r"Airflow UI: (http://127\.0\.0\.1:\d+)\s+login: admin / (\S+)", out
        ).groups()
        assert not password.startswith("(see")
        assert "pipelines: " in out and "lakehouse" in out and "curate_samples" in out
        assert f"Iceberg lineage: {url}/plugin/iceberg-lineage" in out
        env_file = (state / "airflow.env").read_text()
        assert "AIRFLOW_HOME=" in env_file and oct((state / "airflow.env").stat().st_mode)[-3:] == "600"
        # The stack's environment (airflow.env is written from it) has no resume hold: the real
        # scheduler keeps the default, never dag.test()'s 0 from the demo's environment.
        assert "AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS" not in env_file
        api = _Api(url, password)
        assert api.call("GET", "/api/v2/importErrors")["total_entries"] == 0

        # A real run in this Airflow: a new raw batch, curated by curate_samples.
        from ray_operators.devstack.demo import generate_batch

        generate_batch(state, 60)
        api.call("PATCH", "/api/v2/dags/curate_samples", {"is_paused": False})
        run_id = api.call("POST", "/api/v2/dags/curate_samples/dagRuns", {"logical_date": None})["dag_run_id"]
        assert api.wait_run("curate_samples", run_id) == "success"
        curated = demo_catalog(state).load_table("curated.samples").current_snapshot()
        assert curated.summary["lakehouse.run-id"] == run_id

        shots = _artifacts()
        with browser() as chromium:
            page = chromium.new_page(viewport={"width": 1500, "height": 1000})
            _login(page, url, password)
            # The navigation's "Iceberg lineage" page: every table the demo wrote, and the graph.
            page.goto(f"{url}/plugin/iceberg-lineage")
            frame = _plugin_frame(page, "/ray-lakehouse/lineage")
            frame.wait_for_selector("h1:text('Iceberg lineage')")
            for table in ("curated.samples", "features.samples", "ml.models", "ml.predictions", "logs.spark"):
                assert frame.locator(f"tr.snapshot[data-table='{table}']").count() >= 1, table
            predictions = next(s for s in report["stages"] if s["task_id"] == "infer")["snapshot_id"]
            node = frame.locator(f"g.node[id='iceberg_default:ml.predictions@{predictions}']")
            assert node.count() == 1
            assert frame.locator("path.edge").count() >= 3
            page.screenshot(path=str(shots / "iceberg-lineage.png"), full_page=True)

            # The DAG run's "Iceberg lineage" tab: what the run read and wrote, its Ray job.
            page.goto(f"{url}/dags/curate_samples/runs/{quote(run_id, safe='')}/plugin/iceberg-lineage-run")
            frame = _plugin_frame(page, "/ray-lakehouse/lineage/run")
            frame.wait_for_selector("h1")
            assert run_id in frame.inner_text("h1")
            wrote = frame.locator(
                f"tr.snapshot[data-table='curated.samples'][data-snapshot='{curated.snapshot_id}']"
            )
            assert wrote.count() == 1
            ray_link = wrote.locator("a", has_text=curated.summary["lakehouse.ray-submission-id"])
            assert ray_link.get_attribute("href").endswith(
                f"/#/jobs/{curated.summary['lakehouse.ray-submission-id']}"
            )
            assert frame.locator("tr.read-raw").count() >= 1
            assert (
                frame.locator(f"g.node[id='iceberg_default:curated.samples@{curated.snapshot_id}']").count()
                == 1
            )
            page.screenshot(path=str(shots / "iceberg-lineage-run.png"), full_page=True)
            # Anonymous: refused (no cookie in a fresh context).
            anonymous = chromium.new_context().request.get(f"{url}/ray-lakehouse/lineage")
            assert anonymous.status == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text(errors="replace")[-5000:]
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


# ---- the browser ----------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium():
    """A context manager giving a Playwright browser on Debian's chromium (never a downloaded one);
    skips, saying what to install, where there is none."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium: apt-get install chromium (.ci/run installs it)")
    from contextlib import contextmanager

    from playwright.sync_api import sync_playwright

    @contextmanager
    def launch():
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()

    return launch


def _artifacts() -> Path:
    """Where browser tests save their screenshots: ``$TEST_ARTIFACTS`` or ``test-artifacts/``."""
    folder = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _login(page, url: str, password: str) -> None:
    """Airflow's simple auth manager login form, as a user fills it."""
    page.goto(f"{url}/auth/login")
    page.fill("input[name='username']", "admin")
    page.fill("input[name='password']", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda address: "/auth/login" not in address, timeout=60_000)


def _plugin_frame(page, path: str):
    """The frame of the Airflow UI's iframe that shows the plugin view at ``path``, loaded."""
    frame = page.wait_for_selector(f"iframe[src^='{path}']", timeout=60_000).content_frame()
    frame.wait_for_load_state()
    return frame


class _Api:
    """The REST API as ``admin`` (a JWT from ``/auth/token``)."""

    def __init__(self, url: str, password: str) -> None:
        self.url = url
        self.token = self._http("POST", "/auth/token", {"username": "admin", "password": password}, None)[
            "access_token"
        ]

    def _http(self, method: str, path: str, body, token):
        import urllib.request

        request = urllib.request.Request(
            self.url + path, data=None if body is None else json.dumps(body).encode(), method=method
        )
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def call(self, method: str, path: str, body=None):
        return self._http(method, path, body, self.token)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(0.5)
        raise AssertionError(f"{dag_id}/{run_id} did not finish in {timeout}s")
