"""Airflow plugin: the Ray job extra link, and the Iceberg lineage views in the UI.

The lineage views are a FastAPI app on Airflow's API server (``/ray-lakehouse``), built at its
first request; every route requires an authenticated Airflow user allowed to read DAG runs
(:mod:`ray_operators.lineage.web`). Two external views put them in the UI: "Iceberg lineage" in
the navigation, and an "Iceberg lineage" tab on every DAG run.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ray_operators.lineage.web import URL_PREFIX, LazyLineageApp
from ray_operators.links.ray import RayJobLink


class RayLakehousePlugin(AirflowPlugin):
    name = "ray_lakehouse"
    operator_extra_links = [RayJobLink()]
    fastapi_apps = [{"name": "ray_lakehouse_lineage", "app": LazyLineageApp(), "url_prefix": URL_PREFIX}]
    external_views = [
        {
            "name": "Iceberg lineage",
            "href": f"{URL_PREFIX}/lineage",
            "destination": "nav",
            "url_route": "iceberg-lineage",
            "category": "browse",
        },
        {
            "name": "Iceberg lineage",
            "href": f"{URL_PREFIX}/lineage/run?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "iceberg-lineage-run",
        },
    ]
