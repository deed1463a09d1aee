"""SparkCurateOperator: the spark-submit it runs, through real Airflow (dag.test).

No Spark cluster (nor the Iceberg Spark runtime, which only Maven serves) is reachable here, so a
stand-in ``spark-submit`` on PATH records what it was given. What is checked is everything the
operator is responsible for: the application, the package zip, the Iceberg catalog configuration
of the very catalog the ``iceberg`` connection describes, the stage spec and run key, and that
secrets reach Spark only through a private properties file.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

import pytest

from ray_operators.contract.spec import StageSpec
from ray_operators.spark.conf import jdbc_uri, spark_catalog_conf
from tests.airflow_helpers import get_dag

pytestmark = pytest.mark.integration
SECRET = "s3cr3t-Key-do-not-print"

STUB = """#!{python}
import json, os, stat, sys, zipfile
argv = sys.argv[1:]
record = {{"argv": argv}}
if "--properties-file" in argv:
    path = argv[argv.index("--properties-file") + 1]
    record["properties"] = open(path).read()
    record["properties_mode"] = stat.S_IMODE(os.stat(path).st_mode)
if "--py-files" in argv:
    record["py_files"] = zipfile.ZipFile(argv[argv.index("--py-files") + 1]).namelist()
json.dump(record, open(os.environ["STUB_RECORD"], "w"))
print("stand-in spark-submit: done")
"""


@pytest.fixture
def spark_submit(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "spark-submit"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    record = tmp_path / "record.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_RECORD", str(record))
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_TEST", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    catalog_db = tmp_path / "catalog.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ICEBERG_SPARK",
        json.dumps(
            {
                "conn_type": "iceberg",
                "extra": {
                    "type": "sql",
                    "uri": f"sqlite:///{catalog_db}",
                    "warehouse": "s3://warehouse/",
                    "s3.endpoint": "http://minio:9000",
                    "s3.access-key-id": "minio-user",
                    "s3.secret-access-key": SECRET,
                },
            }
        ),
    )
    return record, catalog_db


def test_spark_curate_submits_the_stage_with_the_catalog_and_no_secret_on_the_command_line(
    airflow_db, spark_submit
):
    record_path, catalog_db = spark_submit
    dag = get_dag("curate_spark_logs_on_spark")
    when = datetime(2026, 3, 1, tzinfo=UTC)
    run = dag.test(logical_date=when, run_after=when)
    assert run.state == "success"
    record = json.loads(record_path.read_text())
    argv = record["argv"]
    command = " ".join(argv)

    assert SECRET not in command and "minio-user" not in command
    assert "spark.sql.catalog.iceberg_spark=org.apache.iceberg.spark.SparkCatalog" in argv
    assert "spark.sql.catalog.iceberg_spark.type=jdbc" in argv
    assert f"spark.sql.catalog.iceberg_spark.uri=jdbc:sqlite:{catalog_db}" in argv
    assert "spark.sql.catalog.iceberg_spark.s3.endpoint=http://minio:9000" in argv
    assert "iceberg-spark-runtime" in argv[argv.index("--packages") + 1]
    assert argv[argv.index("--executor-memory") + 1] == "2g"
    # Secrets only in a private properties file.
    assert record["properties_mode"] == 0o600
    assert f"spark.sql.catalog.iceberg_spark.s3.secret-access-key {SECRET}" in record["properties"]
    assert "spark.sql.catalog.iceberg_spark.s3.access-key-id minio-user" in record["properties"]
    # The application and the package it imports.
    assert argv[-3].endswith("ray_operators/spark/curate_spark_logs.py")
    assert "ray_operators/jobs/curate.py" in record["py_files"]
    assert "ray_operators/spark/curate_spark_logs.py" in record["py_files"]
    # The stage spec: same contract and run key as the Ray variant.
    assert argv[-2] == "--spec"
    spec = StageSpec.decode(argv[-1])
    assert spec.stage == "curate" and spec.output_table == "logs.spark"
    assert spec.catalog_name == "iceberg_spark"
    assert spec.raw_paths == ["s3a://raw/spark-logs"]
    assert spec.run_key.startswith("curate_spark_logs_on_spark/curate/interval=2026-")
    assert "s3.secret-access-key" not in spec.catalog_properties
    assert "s3.access-key-id" not in spec.catalog_properties


def test_catalog_conf_maps_pyiceberg_properties_to_the_spark_runtime():
    public, secret = spark_catalog_conf(
        "lake",
        {"type": "rest", "uri": "http://rest:8181", "warehouse": "s3://w/", "credential": "id:secret"},
    )
    assert public["spark.sql.catalog.lake.type"] == "rest"
    assert public["spark.sql.catalog.lake.uri"] == "http://rest:8181"
    assert secret == {"spark.sql.catalog.lake.credential": "id:secret"}

    public, secret = spark_catalog_conf(
        "pg", {"type": "sql", "uri": "postgresql+psycopg2://u:pw@db:5432/cat"}
    )
    assert public["spark.sql.catalog.pg.uri"] == "jdbc:postgresql://db:5432/cat"
    assert secret == {"spark.sql.catalog.pg.jdbc.user": "u", "spark.sql.catalog.pg.jdbc.password": "pw"}
    assert jdbc_uri("sqlite:////tmp/c.db") == "jdbc:sqlite:/tmp/c.db"

    with pytest.raises(ValueError, match="type 'dynamodb' has no Spark equivalent"):
        spark_catalog_conf("x", {"type": "dynamodb"})


def test_spark_application_imports_without_pyspark_and_parses_like_the_ray_stage():
    import ray_operators.jobs.curate as ray_curate
    import ray_operators.spark.curate_spark_logs as app

    # The application parses with the Ray stage's own function: one rule set for both engines.
    source = open(app.__file__).read()
    assert "from ray_operators.jobs.curate import parse_line" in source
    row, reason = ray_curate.parse_line('{"timestamp": "2026-01-01T00:00:00Z", "log_level": "INFO"}')
    assert row is None and reason == "missing_field: message"
    with pytest.raises(SystemExit):
        app.main([])  # --spec is required
