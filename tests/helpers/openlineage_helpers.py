"""OpenLineage in tests: pipelines under ``airflow dags test`` with the file transport, and the
datasets an event must carry, computed from the catalog the stages wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

AIRFLOW = str(Path(sys.executable).parent / "airflow")
#: The keys every facet carries that say who produced it, not what it says.
_PRODUCER_KEYS = ("_producer", "_schemaURL", "_deleted")


def transport_env(events: Path) -> dict[str, str]:
    """The file transport, one JSON event per line in ``events``."""
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "ray-lakehouse-tests",
        # The listener builds each event in a forked child and kills it after this many seconds
        # (10 by default): on 2 busy cores that could drop an event.
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "120",
    }


def dags_test(
    dag_id: str, logical_date: str, env: dict[str, str], timeout: int = 900
) -> subprocess.CompletedProcess:
    """``airflow dags test DAG_ID DATE``, as a user runs it."""
    return subprocess.run(
        [AIRFLOW, "dags", "test", dag_id, logical_date],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def task_event(events: list[dict[str, Any]], dag_id: str, task_id: str, event_type: str) -> dict[str, Any]:
    """The one event of that type for the task (exactly one, or the test fails)."""
    found = [e for e in events if e["job"]["name"] == f"{dag_id}.{task_id}" and e["eventType"] == event_type]
    assert len(found) == 1, (
        f"{len(found)} {event_type} events for {dag_id}.{task_id}: {[e['eventType'] for e in events]}"
    )
    return found[0]


def strip_producers(value: Any) -> Any:
    """The event's content without ``_producer``/``_schemaURL`` (they name the library version)."""
    if isinstance(value, dict):
        return {k: strip_producers(v) for k, v in value.items() if k not in _PRODUCER_KEYS}
    if isinstance(value, list):
        return [strip_producers(v) for v in value]
    return value


def table_dataset(catalog: Any, table: str, snapshot_id: int | None) -> dict[str, Any]:
    """The dataset an event must carry for ``table`` at ``snapshot_id``, computed independently of
    the code under test: OpenLineage's Spark naming (``file`` + the table's path, a ``TABLE``
    symlink under the catalog's URI), the snapshot as the version, the schema at that snapshot."""
    metadata = catalog.load_table(table).metadata
    location = metadata.location
    assert location.startswith("file://"), location
    schema = metadata.schema()
    facets: dict[str, Any] = {
        "symlinks": {
            "identifiers": [{"namespace": catalog.properties["uri"], "name": table, "type": "TABLE"}]
        },
    }
    if snapshot_id is not None:
        facets["version"] = {"datasetVersion": str(snapshot_id)}
        schema_id = metadata.snapshot_by_id(snapshot_id).schema_id
        schema = next(s for s in metadata.schemas if s.schema_id == schema_id)
    facets["schema"] = {"fields": [{"name": f.name, "type": str(f.field_type)} for f in schema.fields]}
    return {"namespace": "file", "name": location.removeprefix("file://").rstrip("/"), "facets": facets}


def datasets(event: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """An event's inputs or outputs, without producer keys, in name order."""
    found = [
        {k: v for k, v in d.items() if k in ("namespace", "name", "facets")}
        for d in strip_producers(event[kind])
    ]
    for d in found:
        d["facets"] = {k: v for k, v in d.get("facets", {}).items() if k in ("symlinks", "version", "schema")}
        if not d["facets"]:
            d.pop("facets")
    return sorted(found, key=lambda d: (d["namespace"], d["name"]))


def last_run(dag_id: str) -> tuple[str, str]:
    """``(run_id, state)`` of the DAG's one run in Airflow's metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        (run,) = session.query(DagRun).filter(DagRun.dag_id == dag_id).all()
        return run.run_id, str(run.state)
