"""The Airflow-free intermediate graph between a validated spec and the DAG builder.

Each stage becomes one :class:`~ray_operators.pipelines.converters.TaskNode`, made by the
converter its kind registers in :mod:`ray_operators.pipelines.converters`. The CLI renders and draws this graph without Airflow, Ray or a
database; :mod:`ray_operators.pipelines.build` turns it into a DAG.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ray_operators.pipelines.converters import StageContext, TaskNode, convert
from ray_operators.pipelines.models import Pipeline
from ray_operators.pipelines.topology import dependencies, upstream_stages

#: Params every generated DAG accepts: the input snapshots to reprocess (a UI trigger's form).
REPROCESS_PARAMS: dict[str, dict[str, Any]] = {
    "snapshot_ids": {
        "type": "array",
        "default": [],
        "items": {"type": "integer"},
        "description": "Reprocess exactly these snapshots of the pipeline's input table(s) (appends).",
    },
    "from_snapshot_id": {
        "type": ["null", "integer"],
        "default": None,
        "description": "Reprocess the appends after this snapshot (exclusive)...",
    },
    "to_snapshot_id": {
        "type": ["null", "integer"],
        "default": None,
        "description": "...up to this snapshot (inclusive).",
    },
    "input_table": {
        "type": ["null", "string"],
        "default": None,
        "description": "The input table the snapshot ids belong to (default: every entry input).",
    },
}

#: A run triggered with ``refit: true`` refits every preprocess stage it runs (a new state version,
#: the whole output table rewritten with it).
REFIT_PARAM: dict[str, Any] = {
    "type": "boolean",
    "default": False,
    "description": "Preprocess stages: fit a new preprocessing state and rewrite the whole output table with it.",
}


@dataclass
class PipelineGraph:
    dag_id: str
    schedule: dict[str, Any]
    dag_arguments: dict[str, Any]
    tasks: list[TaskNode]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        """The task list with each task's operator, parameters and asset inlets and outlets, as text."""
        lines = [f"DAG {self.dag_id}", f"  schedule: {json.dumps(self.schedule)}"]
        for key, value in self.dag_arguments.items():
            lines.append(f"  {key}: {json.dumps(value, default=str)}")
        lines.append("tasks:")
        for task in self.tasks:
            up = f" (after {', '.join(task.upstream)})" if task.upstream else ""
            lines.append(f"  {task.task_id}: {task.operator}{up}")
            for key, value in task.arguments.items():
                lines.append(f"      {key} = {json.dumps(value, default=str)}")
            for key, tables in (("inlets", task.inlets), ("outlets", task.outlets)):
                if tables:
                    lines.append(f"      {key}: {', '.join(tables)}")
        return "\n".join(lines)

    def mermaid(self) -> str:
        lines = ["flowchart LR"]
        for table in self._tables():
            lines.append(f'  {_ident("t_" + table)}[("{table}")]')
        for task in self.tasks:
            lines.append(f'  {_ident(task.task_id)}["{task.task_id}<br/>{task.kind}"]')
        for task in self.tasks:
            for up in task.upstream:
                lines.append(f"  {_ident(up)} --> {_ident(task.task_id)}")
            for table in task.reads:
                lines.append(f"  {_ident('t_' + table)} -.-> {_ident(task.task_id)}")
            for table in task.writes:
                lines.append(f"  {_ident(task.task_id)} -.-> {_ident('t_' + table)}")
        return "\n".join(lines) + "\n"

    def dot(self) -> str:
        lines = [f'digraph "{self.dag_id}" {{', "  rankdir=LR;"]
        for table in self._tables():
            lines.append(f'  "t_{table}" [label="{table}", shape=cylinder];')
        for task in self.tasks:
            lines.append(f'  "{task.task_id}" [label="{task.task_id}\\n{task.kind}", shape=box];')
        for task in self.tasks:
            for up in task.upstream:
                lines.append(f'  "{up}" -> "{task.task_id}";')
            for table in task.reads:
                lines.append(f'  "t_{table}" -> "{task.task_id}" [style=dashed];')
            for table in task.writes:
                lines.append(f'  "{task.task_id}" -> "t_{table}" [style=dashed];')
        return "\n".join([*lines, "}"]) + "\n"

    def _tables(self) -> list[str]:
        return sorted({t for task in self.tasks for t in (*task.reads, *task.writes)})


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def build_graph(pipeline: Pipeline) -> PipelineGraph:
    conns = pipeline.connections
    deps = dependencies(pipeline)
    schedule: dict[str, Any] = {"kind": "none"}
    watched: set[str] = set()
    if pipeline.schedule and pipeline.schedule.kind == "cron":
        schedule = {"kind": "cron", "cron": pipeline.schedule.cron, "catchup": pipeline.schedule.catchup}
    elif pipeline.schedule and pipeline.schedule.kind == "on_snapshot":
        schedule = {
            "kind": "on_snapshot",
            "tables": [t.model_dump() for t in pipeline.schedule.on_snapshot or []],
            "iceberg_conn_id": conns.iceberg_conn_id,
        }
        watched = {t.table for t in pipeline.schedule.on_snapshot or []}
    params = {name: p.model_dump(exclude_none=True) for name, p in pipeline.params.items()}
    for name, p in REPROCESS_PARAMS.items():
        params.setdefault(name, p)
    if any(stage.kind == "preprocess" for stage in pipeline.stages):
        params.setdefault("refit", REFIT_PARAM)
    dag_arguments = {
        "description": pipeline.description,
        "start_date": pipeline.start_date.isoformat(),
        "tags": sorted({"ray-lakehouse", *pipeline.tags}),
        "max_active_runs": pipeline.max_active_runs,
        "default_args": {
            "owner": pipeline.owner,
            "retries": pipeline.retries,
            "retry_delay_seconds": pipeline.retry_delay,
        },
        "params": params,
    }

    tasks: list[TaskNode] = []
    for stage in pipeline.stages:
        ctx = StageContext(pipeline, upstream_stages(pipeline, deps, stage.name), frozenset(watched))
        node = convert(stage, ctx)
        node.upstream = list(deps[stage.name])
        tasks.append(node)
    return PipelineGraph(pipeline.name, schedule, dag_arguments, tasks)
