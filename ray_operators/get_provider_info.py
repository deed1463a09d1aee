"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from ray_operators import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-ray-lakehouse",
        "name": "Ray Lakehouse",
        "description": "Ray Data jobs and Apache Iceberg snapshots for AI lakehouse pipelines.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Ray",
                "external-doc-url": "https://docs.ray.io/en/latest/cluster/running-applications/job-submission/",
                "tags": ["software"],
            }
        ],
        "operators": [{"integration-name": "Ray", "python-modules": ["ray_operators.operators.ray_job"]}],
        "hooks": [{"integration-name": "Ray", "python-modules": ["ray_operators.hooks.ray"]}],
        "triggers": [{"integration-name": "Ray", "python-modules": ["ray_operators.triggers.ray_job"]}],
        "connection-types": [
            {"hook-class-name": "ray_operators.hooks.ray.RayJobsHook", "connection-type": "ray"}
        ],
        "extra-links": ["ray_operators.links.ray.RayJobLink"],
    }
