"""Pipeline graph -> Airflow DAG, and the loader a ``dags/`` file calls.

:func:`load_dags` turns every spec under the pipeline folders into a DAG. A broken spec breaks
only itself: the good pipelines load, and the broken ones are reported as one import error of the
loader file (Airflow keys import errors by Python file), naming each spec file with line, column
and message. ``strict=True`` (or ``RAY_LAKEHOUSE_STRICT=1``, for CI) raises on the first error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

from ray_operators.pipelines.converters import TaskNode
from ray_operators.pipelines.errors import PipelineSpecError
from ray_operators.pipelines.graph import PipelineGraph, build_graph
from ray_operators.pipelines.loader import LoadedPipeline, find_specs, load_pipeline

log = logging.getLogger(__name__)
FOLDERS_ENV = "RAY_LAKEHOUSE_PIPELINE_DIRS"
STRICT_ENV = "RAY_LAKEHOUSE_STRICT"


def pipeline_folders(default: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The default folders plus those in ``RAY_LAKEHOUSE_PIPELINE_DIRS`` (``os.pathsep``-separated)
    and Airflow's ``[ray_lakehouse] pipeline_folders`` setting (comma-separated)."""
    folders = [Path(p) for p in default]
    folders += [Path(p) for p in os.environ.get(FOLDERS_ENV, "").split(os.pathsep) if p]
    try:
        from airflow.sdk.configuration import conf

        setting = conf.get("ray_lakehouse", "pipeline_folders", fallback="")
    except Exception:  # no Airflow configuration available: the setting does not apply
        setting = ""
    folders += [Path(p.strip()) for p in setting.split(",") if p.strip()]
    return list(dict.fromkeys(folders))


def load_dags(
    loader_file: str | os.PathLike[str],
    folders: Iterable[str | os.PathLike[str]] | None = None,
    *,
    strict: bool | None = None,
) -> dict[str, Any]:
    """``{name: DAG}`` for the loader file's module globals.

    ``folders`` defaults to ``pipelines/`` next to the loader file.
    """
    if folders is None:
        folders = [Path(loader_file).resolve().parent / "pipelines"]
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes")
    dags: dict[str, Any] = {}
    broken: list[str] = []
    for path in find_specs(*pipeline_folders(folders)):
        try:
            loaded = load_pipeline(path)
            for warning in loaded.warnings:
                log.warning("%s", warning.format(context=0))
            dag = build_dag(loaded)
        except PipelineSpecError as err:
            if strict:
                raise
            broken.append(str(err))
            continue
        except Exception as err:  # a spec that validates but does not build: still only itself
            if strict:
                raise
            broken.append(f"{path}: {type(err).__name__}: {err}")
            continue
        if dag.dag_id in dags:
            message = f"{path}: pipeline name {dag.dag_id!r} is used by another spec too"
            if strict:
                raise PipelineSpecError(message)
            broken.append(message)
            continue
        dags[dag.dag_id] = dag
    if broken:
        dags["ray_lakehouse_spec_errors"] = _broken(broken)
    return dags


def _broken(messages: list[str]) -> Any:
    from airflow.sdk import DAG

    class BrokenPipelineSpecs(DAG):
        """Stands for the specs that did not load; fails validation, so only they are missing."""

        def validate(self) -> None:
            count = len(messages)
            raise PipelineSpecError(
                f"{count} pipeline spec{'s' if count > 1 else ''} did not load:\n\n" + "\n\n".join(messages)
            )

    return BrokenPipelineSpecs(dag_id="ray_lakehouse_spec_errors", schedule=None)


def build_dag(loaded: LoadedPipeline, graph: PipelineGraph | None = None) -> Any:
    import pendulum
    from airflow.sdk import DAG

    pipeline = loaded.pipeline
    graph = graph or build_graph(pipeline)
    args = graph.dag_arguments
    start = pendulum.parse(args["start_date"], tz="UTC")
    if not isinstance(start, datetime):  # a date or a datetime, by the spec model
        raise PipelineSpecError(f"{loaded.path}: start_date {args['start_date']!r} is not a date")
    default_args = dict(args["default_args"])

    default_args["retry_delay"] = timedelta(seconds=default_args.pop("retry_delay_seconds"))
    # One Asset object per table: an inlet declared without the watcher would replace the
    # scheduled asset's watcher when Airflow collects the DAG's assets.
    assets: dict[str, Any] = {}
    dag = DAG(
        dag_id=graph.dag_id,
        description=args["description"],
        schedule=_schedule(graph.schedule, assets),
        start_date=start,
        catchup=bool(graph.schedule.get("catchup", False)),
        tags=args["tags"],
        max_active_runs=args["max_active_runs"],
        default_args=default_args,
        params=_params(args["params"]),
        doc_md=_doc(loaded, graph),
        render_template_as_native_obj=False,
    )
    tasks: dict[str, Any] = {}
    with dag:
        for node in graph.tasks:
            tasks[node.task_id] = _operator(node, assets)
    for node in graph.tasks:
        for up in node.upstream:
            tasks[up] >> tasks[node.task_id]
    return dag


def _schedule(schedule: dict[str, Any], registry: dict[str, Any]) -> Any:
    if schedule["kind"] == "cron":
        cron = schedule["cron"]
        if cron in ("@once", "@continuous"):
            return cron
        # Data-interval semantics (each run covers [start, end)), so interval reads, slices and
        # backfills of intervals mean what they say, whatever create_cron_data_intervals is.
        from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

        return CronDataIntervalTimetable(cron, timezone="UTC")
    if schedule["kind"] == "on_snapshot":
        from ray_operators.assets import iceberg_asset

        assets = [
            iceberg_asset(
                t["table"],
                iceberg_conn_id=schedule["iceberg_conn_id"],
                watch=True,
                poll_interval=t["poll_interval"],
                operations=t["operations"],
                min_added_records=t["min_added_records"],
            )
            for t in schedule["tables"]
        ]
        registry.update({t["table"]: a for t, a in zip(schedule["tables"], assets, strict=True)})
        if len(assets) == 1:
            return assets
        from airflow.sdk import AssetAny

        return AssetAny(*assets)  # any of the tables starts a run
    return None


def _params(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from airflow.sdk import Param

    out = {}
    for name, p in params.items():
        p = dict(p)
        default = p.pop("default", None)
        out[name] = Param(default, **p)
    return out


def _operator(node: TaskNode, registry: dict[str, Any]) -> Any:
    """The node's operator, its inlets and outlets the DAG's shared asset objects."""
    module, _, name = node.operator.rpartition(".")
    cls = getattr(import_module(module), name)
    kwargs = dict(node.arguments)
    from ray_operators.assets import iceberg_asset

    conn = kwargs.get("iceberg_conn_id", "iceberg_default")

    def asset(table: str) -> Any:
        if table not in registry:
            registry[table] = iceberg_asset(table, iceberg_conn_id=conn)
        return registry[table]

    if node.inlets:
        kwargs["inlets"] = [asset(t) for t in node.inlets]
    if node.outlets:
        kwargs["outlets"] = [asset(t) for t in node.outlets]
    return cls(task_id=node.task_id, **kwargs)


def _doc(loaded: LoadedPipeline, graph: PipelineGraph) -> str:
    resolved = loaded.pipeline.model_dump(mode="json", by_alias=True, exclude_none=True)
    return "\n".join(
        [
            f"# {graph.dag_id}",
            "",
            loaded.pipeline.description or "",
            "",
            f"Generated from `{loaded.path}` by ray-lakehouse.",
            "",
            "## Spec",
            "",
            "```yaml",
            loaded.source.text.rstrip(),
            "```",
            "",
            "## Resolved",
            "",
            "```json",
            json.dumps(resolved, indent=2, sort_keys=True),
            "```",
        ]
    )
