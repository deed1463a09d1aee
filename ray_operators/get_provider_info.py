"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

import json
from typing import Any

from ray_operators import __version__

#: The ray connection form in the Airflow UI (also returned by RayJobsHook.get_ui_field_behaviour).
RAY_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login"],
    "relabeling": {
        "host": "Ray dashboard host (or full URL)",
        "port": "Ray dashboard port",
        "schema": "Scheme (http or https)",
        "password": "Ray auth token",
    },
    "placeholders": {
        "host": "127.0.0.1",
        "port": "8265",
        "schema": "http",
        "password": "output of `ray get-auth-token`",
        "extra": json.dumps(
            {
                "auth_header": "authorization",
                "headers": {},
                "cookies": {},
                "metadata": {"team": "ml"},
                "verify": True,
                "dashboard_url": "https://ray.example.com",
            }
        ),
    },
}


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
            },
            {
                "integration-name": "Iceberg",
                "external-doc-url": "https://iceberg.apache.org/",
                "tags": ["software"],
            },
        ],
        "operators": [{"integration-name": "Ray", "python-modules": ["ray_operators.operators.ray_job"]}],
        "sensors": [{"integration-name": "Iceberg", "python-modules": ["ray_operators.sensors.iceberg"]}],
        "hooks": [
            {"integration-name": "Ray", "python-modules": ["ray_operators.hooks.ray"]},
            {"integration-name": "Iceberg", "python-modules": ["ray_operators.hooks.iceberg"]},
        ],
        "triggers": [
            {"integration-name": "Ray", "python-modules": ["ray_operators.triggers.ray_job"]},
            {"integration-name": "Iceberg", "python-modules": ["ray_operators.triggers.iceberg"]},
        ],
        "connection-types": [
            {
                "hook-class-name": "ray_operators.hooks.ray.RayJobsHook",
                "hook-name": "Ray",
                "connection-type": "ray",
                "ui-field-behaviour": RAY_UI_FIELD_BEHAVIOUR,
            }
        ],
        "extra-links": ["ray_operators.links.ray.RayJobLink"],
    }
