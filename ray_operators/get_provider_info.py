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

#: The ``ray`` connection form's extra fields (Airflow 3.2+ ``conn-fields``: stored in the
#: connection's extra under these names, which :class:`~ray_operators.hooks.ray.RayConnectionConfig`
#: reads). ``headers``, ``cookies`` and ``metadata`` (JSON objects) stay in the raw extra.
RAY_CONN_FIELDS: dict[str, Any] = {
    "dashboard_url": {
        "label": "Dashboard URL for browsers",
        "description": "The Ray dashboard's address as users open it, when it differs from the API address",
        "schema": {"type": ["string", "null"]},
    },
    "auth_header": {
        "label": "Auth header",
        "description": "Where the token goes: authorization (Ray's token auth) or x-ray-authorization",
        "schema": {"type": ["string", "null"], "enum": ["authorization", "x-ray-authorization", None]},
    },
    "verify": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "request_timeout": {
        "label": "Request timeout (s)",
        "description": "Seconds one Jobs API request may take",
        "schema": {"type": ["number", "null"], "default": 30.0},
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
        # Iceberg's hook is the Apache Iceberg provider's IcebergHook (ray_operators.iceberg_catalog
        # builds on it and holds no hook of its own).
        "hooks": [{"integration-name": "Ray", "python-modules": ["ray_operators.hooks.ray"]}],
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
                "conn-fields": RAY_CONN_FIELDS,
            }
        ],
        "asset-uris": [
            {
                "schemes": ["iceberg"],
                "handler": "ray_operators.assets.sanitize_uri",
                "factory": "ray_operators.assets.create_asset",
                "to_openlineage_converter": "ray_operators.assets.convert_asset_to_openlineage",
            }
        ],
        "extra-links": ["ray_operators.links.ray.RayJobLink"],
    }
