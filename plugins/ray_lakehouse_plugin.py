"""Airflow plugin: registers the Ray job extra link with the UI."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ray_operators.links.ray import RayJobLink


class RayLakehousePlugin(AirflowPlugin):
    name = "ray_lakehouse"
    operator_extra_links = [RayJobLink()]
