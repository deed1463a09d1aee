"""Airflow DAGs from the pipeline specs in dags/pipelines/ (one YAML file per pipeline).

More folders: RAY_LAKEHOUSE_PIPELINE_DIRS or [ray_lakehouse] pipeline_folders. A broken spec is
reported as this file's import error and every other pipeline still loads; set
RAY_LAKEHOUSE_STRICT=1 to fail on the first error instead.
"""

from ray_operators.pipelines.build import load_dags

globals().update(load_dags(__file__))
