"""Scheduled on an Iceberg table through the snapshot AssetWatcher (real scheduler test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from ray_operators.assets import iceberg_asset, snapshot_ids_from_events

events_table = iceberg_asset("db.events", iceberg_conn_id="iceberg_test", watch=True, poll_interval=1)

with DAG(
    "asset_watch_consumer",
    schedule=[events_table],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):

    @task
    def record(**context):
        ids = snapshot_ids_from_events(context["triggering_asset_events"])
        out = Path(os.environ["WATCH_OUT"]) / f"{context['run_id'].replace(':', '_')}.json"
        out.write_text(json.dumps({"snapshot_ids": ids, "logical_date": str(context.get("logical_date"))}))
        return ids

    record()
