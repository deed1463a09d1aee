"""The Airflow UI's Iceberg lineage views: a FastAPI app that Airflow's API server mounts.

- ``/lineage``: every table of the ``iceberg`` connections' catalogs, its snapshots newest first,
  the DAG run, task and Ray job that wrote each one and what each read, under a lineage graph
  (``table@snapshot -> table@snapshot``, SVG) of the newest snapshots.
- ``/lineage/run?dag_id=&run_id=``: what one DAG run read and wrote, with links to its Ray jobs
  and to the runs that wrote what it read, and the graph of its outputs back to the raw input.
- ``/api/lineage`` and ``/api/lineage/run``: the same as JSON.

Every route requires an authenticated Airflow user allowed to read DAG runs (Airflow's own
``requires_access_dag`` dependency: 401 without a token, 403 without the permission); the table
view shows only the snapshots of DAGs the user may read. Routes are plain ``def``: FastAPI runs
them in its thread pool, so catalog and database reads never block the API server's event loop.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (GetUserDep, a
# name imported inside create_app) at runtime, and a postponed one would not resolve.

from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from ray_operators.curation.protocol import processing_table
from ray_operators.lineage.catalogs import CatalogLineage, read_catalogs, with_job_urls
from ray_operators.lineage.records import NodeKey, SnapshotRecord, lineage_graph
from ray_operators.lineage.svg import render_svg

#: Where the plugin mounts the app on Airflow's API server.
URL_PREFIX = "/ray-lakehouse"
#: Snapshots per table drawn in the table view's graph (the list below it has them all).
GRAPH_SNAPSHOTS_PER_TABLE = 3

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#263238;font-size:14px}
h1{font-size:20px;margin:0 0 8px} h2{font-size:16px;margin:24px 0 6px} h3{font-size:14px;margin:18px 0 4px}
table{border-collapse:collapse;margin:4px 0 12px} th,td{border:1px solid #cfd8dc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eceff1} .muted{color:#78909c} .off{color:#b71c1c} .graph{overflow:auto;border:1px solid #cfd8dc;padding:4px;background:#fafafa}
code{font-size:12px} .error{color:#b71c1c}
"""


def _airflow_run_url(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _run_view_url(dag_id: str, run_id: str) -> str:
    return f"{URL_PREFIX}/lineage/run?{urlencode({'dag_id': dag_id, 'run_id': run_id})}"


def _node_href(key: NodeKey, record: SnapshotRecord | None) -> str | None:
    if record is not None and record.dag_id and record.run_id:
        return _run_view_url(record.dag_id, record.run_id)
    return None


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _writer(record: SnapshotRecord, *, this_run: bool = False) -> str:
    """Who wrote the snapshot: its DAG run (links to Airflow's run page and our run view; not on
    the run's own view), task, and the Ray job (link to the Ray dashboard) or Spark application."""
    if record.hidden:
        return '<span class="muted">a DAG you cannot read</span>'
    if not record.dag_id:
        return '<span class="muted">outside a pipeline</span>'
    run = escape(record.run_id or "")
    parts = (
        []
        if this_run
        else [
            f'<a href="{escape(_airflow_run_url(record.dag_id, record.run_id or ""))}" target="_top">'
            f"{escape(record.dag_id)} / {run}</a> "
            f'(<a href="{escape(_run_view_url(record.dag_id, record.run_id or ""))}">lineage</a>)'
        ]
    )
    parts.append(f"task <code>{escape(record.task_id or '')}</code>")
    if record.submission_id:
        job = escape(record.submission_id)
        parts.append(
            f'Ray job <a href="{escape(record.ray_job_url)}" target="_blank" rel="noopener">{job}</a>'
            if record.ray_job_url
            else f"Ray job <code>{job}</code>"
        )
    if record.spark_app_id:
        parts.append(f"Spark application <code>{escape(record.spark_app_id)}</code>")
    return "<br>".join(parts)


def _reads(record: SnapshotRecord, by_key: dict[NodeKey, SnapshotRecord]) -> str:
    items = []
    for read in record.reads:
        links = []
        for sid in read.snapshot_ids:
            source = by_key.get((record.catalog, read.table, sid))
            label = f"{escape(read.table)}@{sid}"
            if source is not None and source.dag_id and source.run_id:
                label += (
                    f' (<a href="{escape(_run_view_url(source.dag_id, source.run_id))}">'
                    f"{escape(source.dag_id)} / {escape(source.run_id)}</a>)"
                )
            links.append(label)
        shown = ", ".join(links) or escape(read.table)
        if read.value not in {str(s) for s in read.snapshot_ids}:
            shown += f' <span class="muted">as {escape(read.value)}</span>'
        items.append(shown)
    items += [f"raw <code>{escape(path)}</code>" for path in record.raw]
    return "<br>".join(items) or '<span class="muted">-</span>'


def _snapshot_rows(
    records: list[SnapshotRecord],
    by_key: dict[NodeKey, SnapshotRecord],
    table_col: bool,
    this_run: bool = False,
) -> str:
    head = (
        "<tr>"
        + ("<th>table</th>" if table_col else "")
        + "<th>snapshot</th><th>committed</th><th>operation</th><th>rows added</th><th>written by</th><th>read</th></tr>"
    )
    rows = []
    for r in records:
        state = (
            "" if r.on_branch else ' <span class="off">(off the branch: rolled back or unpublished)</span>'
        )
        refs = f' <span class="muted">[{escape(", ".join(r.refs))}]</span>' if r.refs else ""
        rows.append(
            f'<tr class="snapshot" data-table="{escape(r.table)}" data-snapshot="{r.snapshot_id}">'
            + (f"<td>{escape(r.table)}</td>" if table_col else "")
            + f"<td><code>{r.snapshot_id}</code>{refs}{state}</td><td>{_ts(r.committed_at_ms)}</td>"
            f"<td>{escape(r.operation)}{' · ' + escape(r.stage) if r.stage else ''}</td>"
            f"<td>{'' if r.added_records is None else r.added_records}</td>"
            f"<td>{_writer(r, this_run=this_run)}</td><td>{_reads(r, by_key)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _errors(lineage: CatalogLineage) -> str:
    return "".join(f'<p class="error">{escape(message)}</p>' for message in lineage.errors.values())


# ---- what the views show, as data (the JSON routes return it; the pages render it) ----------


def _visible(lineage: CatalogLineage, can_read_runs: Callable[[str], bool] | None) -> list[SnapshotRecord]:
    """Every snapshot, with who wrote it left out where the user may not read the writing DAG's
    runs (asked once per DAG)."""
    if can_read_runs is None:
        return lineage.records
    allowed = {d: can_read_runs(d) for d in {r.dag_id for r in lineage.records if r.dag_id}}
    return [r if not r.dag_id or allowed[r.dag_id] else r.masked() for r in lineage.records]


def table_view(can_read_runs: Callable[[str], bool] | None) -> tuple[CatalogLineage, list[SnapshotRecord]]:
    lineage = read_catalogs()
    return lineage, with_job_urls(_visible(lineage, can_read_runs))


def run_view(
    dag_id: str, run_id: str, can_read_runs: Callable[[str], bool] | None
) -> tuple[CatalogLineage, list[SnapshotRecord], list[SnapshotRecord]]:
    """Every snapshot as the user may see it, and the snapshots the run wrote (oldest first)."""
    lineage = read_catalogs()
    records = with_job_urls(_visible(lineage, can_read_runs))
    wrote = sorted(
        (r for r in records if r.dag_id == dag_id and r.run_id == run_id),
        key=lambda r: (r.committed_at_ms, r.sequence_number, r.table),
    )
    return lineage, records, wrote


def render_table_page(lineage: CatalogLineage, records: list[SnapshotRecord]) -> str:
    by_key = {r.key: r for r in records}
    shown = CatalogLineage(records=records)
    tables = shown.tables()
    # A curation's processing log is bookkeeping, not data: listed below, not drawn.
    bookkeeping = {(c, processing_table(t)) for c, t in tables} & set(tables)
    newest = [
        r.key for key, rs in tables.items() if key not in bookkeeping for r in rs[:GRAPH_SNAPSHOTS_PER_TABLE]
    ]
    graph = render_svg(lineage_graph(records, only=newest, raw=True, connected=True), _node_href)
    sections = []
    for (catalog, table), rs in tables.items():
        sections.append(
            f'<h3 id="{escape(catalog)}:{escape(table)}">{escape(table)} '
            f'<span class="muted">catalog {escape(catalog)} · {len(rs)} snapshot(s)</span></h3>'
            + _snapshot_rows(rs, by_key, table_col=False)
        )
    body = (
        "<h1>Iceberg lineage</h1>"
        f'<p class="muted">Every table of the iceberg connections\' catalogs, its snapshots newest first, '
        f"who wrote each and what each read. The graph draws the {GRAPH_SNAPSHOTS_PER_TABLE} newest snapshots "
        "of each table that read or were read (curation's processing logs are only listed); dashed: off "
        "the branch, or no longer in the catalog.</p>"
        f'{_errors(lineage)}<div class="graph">{graph}</div>{"".join(sections) or "<p>No tables.</p>"}'
    )
    return _page("Iceberg lineage", body)


def run_inputs(wrote: list[SnapshotRecord]) -> tuple[list[NodeKey], list[str]]:
    """What a run's commits read: the snapshots, and the raw folders (each sorted, once)."""
    return sorted({k for r in wrote for k in r.read_keys()}), sorted({p for r in wrote for p in r.raw})


def render_run_page(
    dag_id: str,
    run_id: str,
    lineage: CatalogLineage,
    records: list[SnapshotRecord],
    wrote: list[SnapshotRecord],
) -> str:
    by_key = {r.key: r for r in records}
    read_keys, raw = run_inputs(wrote)
    read_rows = []
    for key in read_keys:
        source = by_key.get(key)
        writer = _writer(source) if source else '<span class="muted">not in the catalog any more</span>'
        read_rows.append(
            f'<tr class="read" data-table="{escape(key[1])}" data-snapshot="{key[2]}"><td>{escape(key[1])}</td>'
            f"<td><code>{key[2]}</code></td><td>{writer}</td></tr>"
        )
    raw_rows = "".join(
        f'<tr class="read-raw"><td colspan="3">raw <code>{escape(p)}</code></td></tr>' for p in raw
    )
    graph = render_svg(
        lineage_graph(records, only=[r.key for r in wrote], upstream=True, raw=True), _node_href
    )
    title = f"{dag_id} / {run_id}"
    body = (
        f"<h1>Iceberg lineage of {escape(title)}</h1>"
        f'<p><a href="{escape(_airflow_run_url(dag_id, run_id))}" target="_top">the DAG run in Airflow</a> · '
        f'<a href="{URL_PREFIX}/lineage">all tables</a></p>{_errors(lineage)}'
        f"<h2>Wrote ({len(wrote)} snapshot(s))</h2>"
        + (
            _snapshot_rows(wrote, by_key, table_col=True, this_run=True)
            if wrote
            else "<p>This run committed no snapshot.</p>"
        )
        + f"<h2>Read ({len(read_keys)} snapshot(s){', raw input' if raw else ''})</h2>"
        + (
            "<table><tr><th>table</th><th>snapshot</th><th>written by</th></tr>"
            + "".join(read_rows)
            + raw_rows
            + "</table>"
            if read_rows or raw_rows
            else "<p>Nothing recorded.</p>"
        )
        + f'<h2>Lineage graph</h2><div class="graph">{graph}</div>'
    )
    return _page(f"Iceberg lineage: {title}", body)


def create_app() -> Any:
    """The FastAPI app (Airflow's API server imports are made here, at the first request)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from airflow.models.dag import DagModel
    from fastapi import Depends, FastAPI
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="Ray lakehouse: Iceberg lineage", docs_url=None, redoc_url=None, openapi_url=None)
    can_read_runs = [Depends(requires_access_dag("GET", DagAccessEntity.RUN))]

    def readable(user: Any) -> Callable[[str], bool]:
        """Whether ``user`` may read a DAG's runs: the permission the routes require, per DAG."""
        manager = get_auth_manager()

        def can_read_runs(dag_id: str) -> bool:
            details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
            return manager.is_authorized_dag(
                method="GET", access_entity=DagAccessEntity.RUN, details=details, user=user
            )

        return can_read_runs

    @app.get("/lineage", response_class=HTMLResponse, dependencies=can_read_runs)
    def lineage_page(user: GetUserDep) -> HTMLResponse:
        return HTMLResponse(render_table_page(*table_view(readable(user))))

    @app.get("/lineage/run", response_class=HTMLResponse, dependencies=can_read_runs)
    def run_page(dag_id: str, run_id: str, user: GetUserDep) -> HTMLResponse:
        return HTMLResponse(render_run_page(dag_id, run_id, *run_view(dag_id, run_id, readable(user))))

    @app.get("/api/lineage", dependencies=can_read_runs)
    def lineage_json(user: GetUserDep) -> dict[str, Any]:
        lineage, records = table_view(readable(user))
        return {"snapshots": [r.to_json() for r in records], "errors": lineage.errors}

    @app.get("/api/lineage/run", dependencies=can_read_runs)
    def run_json(dag_id: str, run_id: str, user: GetUserDep) -> dict[str, Any]:
        lineage, records, wrote = run_view(dag_id, run_id, readable(user))
        by_key = {r.key: r for r in records}
        read, raw = run_inputs(wrote)
        return {
            "wrote": [r.to_json() for r in wrote],
            "read": [
                {
                    "catalog": k[0],
                    "table": k[1],
                    "snapshot_id": k[2],
                    "writer": by_key[k].to_json() if k in by_key else None,
                }
                for k in read
            ],
            "raw": raw,
            "errors": lineage.errors,
        }

    return app


class LazyLineageApp:
    """The ASGI app the plugin registers: builds :func:`create_app` at its first request, so
    processes that load plugins without serving HTTP (scheduler, dag-processor, task runners)
    never import Airflow's API server modules."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)
