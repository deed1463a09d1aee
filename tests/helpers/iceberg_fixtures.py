"""Pytest fixtures for a real Iceberg SqlCatalog, plus running a trigger in the background."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.iceberg_helpers import connection_env, create, open_catalog

HELPERS = Path(__file__).resolve().parent / "iceberg_helpers.py"
CONN_ID = "iceberg_test"


@dataclass
class IcebergEnv:
    root: Path
    conn_id: str
    catalog: Any

    def commit(self, table: str, action: str, *args: str) -> Any:
        """Commit from another process, as Spark or a Ray job would."""
        import json

        out = subprocess.run(
            [sys.executable, str(HELPERS), str(self.root), self.conn_id, table, action, *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    async def acommit(self, table: str, action: str, *args: str) -> Any:
        return await asyncio.to_thread(self.commit, table, action, *args)

    def head(self, table: str) -> int | None:
        return self.catalog.load_table(table).metadata.current_snapshot_id


@pytest.fixture
def iceberg(tmp_path, monkeypatch) -> IcebergEnv:
    root = tmp_path / "lake"
    for key, value in connection_env(CONN_ID, root).items():
        monkeypatch.setenv(key, value)
    catalog = open_catalog(root, CONN_ID)
    create(catalog, "db.events")
    return IcebergEnv(root, CONN_ID, catalog)


class MemoryStateStore:
    """Stands in for Airflow's asset state store (same get/set contract) in trigger unit tests."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        import json

        self.data[key] = json.loads(json.dumps(value))  # the real store keeps JSON


class BackgroundTrigger:
    """Runs a trigger's ``run()`` as a task; events land in a queue."""

    def __init__(self, trigger: Any) -> None:
        self.trigger = trigger
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> BackgroundTrigger:
        async def pump() -> None:
            async for event in self.trigger.run():
                await self.events.put(event.payload)

        self.task = asyncio.ensure_future(pump())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass

    async def next_event(self, timeout: float = 30) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def events_reporting(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Events until ``count`` snapshots are reported: commits made in a row while the trigger
        runs can straddle a poll and come in two events."""
        events = [await self.next_event(timeout)]
        while sum(len(e["snapshot_ids"]) for e in events) < count:
            events.append(await self.next_event(timeout))
        return events

    async def polls_reach(self, count: int, timeout: float = 30) -> None:
        async def wait() -> None:
            while self.trigger.polls < count:
                if self.task is not None and self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)

        await asyncio.wait_for(wait(), timeout)


class CatalogTraffic:
    """What reaches the catalog, counted at the catalog, not by the code under test: SQL statements
    executed on the SqlCatalog's sqlite database under ``root``, and table metadata files read.

    A context manager; ``snapshot()`` returns ``(statements, metadata_reads)`` so far.
    """

    def __init__(self, root: Path) -> None:
        self.database = str(Path(root) / "catalog.db")
        self.statements = 0
        self.metadata_reads = 0
        self._real_read: Any = None

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.database in str(conn.engine.url):
            self.statements += 1

    def snapshot(self) -> tuple[int, int]:
        return self.statements, self.metadata_reads

    def __enter__(self) -> CatalogTraffic:
        from pyiceberg.serializers import FromInputFile
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._on_execute)
        self._real_read = FromInputFile.table_metadata
        traffic, real = self, self._real_read

        def counted(input_file: Any, encoding: str = "utf-8") -> Any:
            traffic.metadata_reads += 1
            return real(input_file, encoding)

        FromInputFile.table_metadata = staticmethod(counted)
        return self

    def __exit__(self, *exc: object) -> None:
        from pyiceberg.serializers import FromInputFile
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._on_execute)
        FromInputFile.table_metadata = staticmethod(self._real_read)
