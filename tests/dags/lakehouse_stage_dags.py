"""DAGs for the lakehouse stage tests: real Ray jobs writing a real SqlCatalog (`iceberg_test`)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from ray_operators.operators.lakehouse import LakehouseStageOperator

with DAG(
    "curate_spark_logs",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"raw_root": Param("/nonexistent", type="string")},
):
    LakehouseStageOperator(
        task_id="curate",
        stage="curate",
        output_table="logs.spark",
        raw_paths="{{ params.raw_root }}",
        iceberg_conn_id="iceberg_test",
        poll_interval=0.5,
        ship_package=True,
    )

# The run params `refit` and `fit_on` reach the stage as templated strings ("True"/"False"): the
# job reads `refit` as a flag, so a run triggered with `{"refit": true}` refits.
with DAG(
    "preprocess_features",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "inputs_json": Param("[]", type="string"),
        "refit": Param(False, type="boolean"),
        "fit_on": Param("input", enum=["input", "table"]),
    },
):
    LakehouseStageOperator(
        task_id="preprocess",
        stage="preprocess",
        inputs="{{ params.inputs_json }}",
        output_table="db.features",
        iceberg_conn_id="iceberg_test",
        poll_interval=0.5,
        stage_params={
            "transforms": [
                {"fn": "ray_operators.jobs.examples:add_total", "batch_format": "pandas", "batch_size": 64},
                {
                    "fn": "ray_operators.jobs.examples:Scale",
                    "kwargs": {"column": "y", "factor": 2.0},
                    "concurrency": 1,
                    "batch_format": "pandas",
                },
            ],
            "standardize": ["x"],
            "categorical": ["color"],
            "tokenize": ["text"],
            "refit": "{{ params.refit }}",
            "fit_on": "{{ params.fit_on }}",
        },
    )

# Every built-in, with all-null and constant columns: no user transforms.
with DAG(
    "preprocess_state_edges",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"inputs_json": Param("[]", type="string")},
):
    LakehouseStageOperator(
        task_id="preprocess",
        stage="preprocess",
        inputs="{{ params.inputs_json }}",
        output_table="db.edges",
        iceberg_conn_id="iceberg_test",
        poll_interval=0.5,
        stage_params={
            "standardize": ["x", "void_s", "flat_s"],
            "minmax": ["z", "void_m", "flat_m"],
            "categorical": ["color"],
            "tokenize": ["text"],
        },
    )

FEATURES = [f"f{i}" for i in range(6)]

# The training and scoring DAGs as configured by default (a small snapshot is read in the job's
# driver) and with "_distributed": local_max_bytes 0, every read in Ray tasks.
for suffix, extra in (("", {}), ("_distributed", {"local_max_bytes": 0})):
    with DAG(
        "train_model" + suffix,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"inputs_json": Param("[]", type="string")},
    ):
        LakehouseStageOperator(
            task_id="train",
            stage="train",
            inputs="{{ params.inputs_json }}",
            output_table="ml.models",
            iceberg_conn_id="iceberg_test",
            poll_interval=0.5,
            stage_params={
                "feature_columns": FEATURES,
                "label_column": "label",
                "num_classes": 2,
                "model_name": "clf",
                "epochs": 8,
                "batch_size": 64,
                "lr": 0.02,
                "num_workers": 1,
                "use_gpu": "auto",
                **extra,
            },
        )

    with DAG(
        "score_features" + suffix,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"inputs_json": Param("[]", type="string")},
    ):
        LakehouseStageOperator(
            task_id="infer",
            stage="infer",
            inputs="{{ params.inputs_json }}",
            output_table="ml.predictions",
            iceberg_conn_id="iceberg_test",
            poll_interval=0.5,
            stage_params={
                "model_table": "ml.models",
                "model_name": "clf",
                "min_actors": 1,
                "max_actors": 2,
                "num_gpus": 0,
                "carry_columns": ["row_id", "label"],
                **extra,
            },
        )

with DAG(
    "curate_tabular",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "raw_root": Param("/nonexistent", type="string"),
        "format": Param("csv", type="string"),
        "output": Param("curated.samples", type="string"),
    },
):
    LakehouseStageOperator(
        task_id="curate",
        stage="curate",
        output_table="{{ params.output }}",
        raw_paths="{{ params.raw_root }}",
        iceberg_conn_id="iceberg_test",
        poll_interval=0.5,
        stage_params={
            "format": "{{ params.format }}",
            "schema": {"id": "long", "x": "double", "flag": "boolean", "seen": "timestamp", "name": "string"},
            "required": ["id", "x"],
        },
    )
