"""A small lake of tables whose snapshots carry pipeline lineage, for the lineage tests."""

from __future__ import annotations

from ray_operators.contract import lineage as keys
from ray_operators.lineage.records import table_records


def run_props(dag_id: str, run_id: str, task_id: str, stage: str, **inputs: str) -> dict[str, str]:
    props = {
        keys.DAG_ID: dag_id,
        keys.RUN_ID: run_id,
        keys.TASK_ID: task_id,
        keys.STAGE: stage,
        keys.SUBMISSION_ID: f"raysubmit_{task_id}",
        keys.RUN_KEY: f"{dag_id}/{task_id}/{run_id}",
    }
    props.update({keys.INPUT_PREFIX + table: value for table, value in inputs.items()})
    return props


def lake_records(catalog):
    out = []
    for table in ("curated.events", "features.events"):
        out += table_records("lake", table, catalog.load_table(table).metadata)
    return out
