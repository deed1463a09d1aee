"""A valid stage spec to vary, for the contract and job tests."""

from __future__ import annotations

from ray_operators.contract.spec import StageSpec


def stage_spec(**overrides):
    base = {
        "stage": "curate",
        "catalog_name": "lake",
        "catalog_properties": {"type": "sql", "uri": "sqlite:////tmp/c.db"},
        "output_table": "db.out",
        "run": {"run_key": "dag/task/run=1", "dag_id": "dag"},
    }
    return StageSpec.from_json({**base, **overrides})
