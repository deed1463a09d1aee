"""The Airflow-free intermediate graph between a validated spec and the DAG builder.

Each stage becomes one :class:`TaskNode`: the task id, the operator's import path, and its
arguments as plain JSON. The CLI renders and draws this graph without Airflow, Ray or a
database; :mod:`ray_operators.pipelines.build` turns it into a DAG.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ray_operators.pipelines.models import Pipeline
from ray_operators.pipelines.spec import ancestors, dependencies, stage_writes

STAGE_OPERATOR = "ray_operators.operators.lakehouse.LakehouseStageOperator"
SENSOR = "ray_operators.sensors.iceberg.IcebergSnapshotSensor"
SPARK_CURATE = "ray_operators.operators.spark_curate.SparkCurateOperator"
RAY_JOB = "ray_operators.operators.ray_job.RayJobOperator"

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
class TaskNode:
    task_id: str
    kind: str
    operator: str
    arguments: dict[str, Any]
    upstream: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)


@dataclass
class PipelineGraph:
    dag_id: str
    schedule: dict[str, Any]
    dag_arguments: dict[str, Any]
    tasks: list[TaskNode]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        """The task list with each task's operator and parameters, as text."""
        lines = [f"DAG {self.dag_id}", f"  schedule: {json.dumps(self.schedule)}"]
        for key, value in self.dag_arguments.items():
            lines.append(f"  {key}: {json.dumps(value, default=str)}")
        lines.append("tasks:")
        for task in self.tasks:
            up = f" (after {', '.join(task.upstream)})" if task.upstream else ""
            lines.append(f"  {task.task_id}: {task.operator}{up}")
            for key, value in task.arguments.items():
                lines.append(f"      {key} = {json.dumps(value, default=str)}")
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
        up = [pipeline.stage(n) for n in ancestors(deps, stage.name)]
        node = _task(stage, pipeline, up, watched)
        node.upstream = list(deps[stage.name])
        if stage.retries is not None:
            node.arguments["retries"] = stage.retries
        if stage.description:
            node.arguments["doc_md"] = stage.description
        tasks.append(node)
    return PipelineGraph(pipeline.name, schedule, dag_arguments, tasks)


def _input_ref(item: Any, up: list[Any], watched: set[str], whole: bool = False) -> dict[str, Any]:
    """Where a stage's input snapshot comes from at run time (resolved by the operator)."""
    producer = next((s for s in reversed(up) if item.table in stage_writes(s)), None)
    sensor = next((s for s in reversed(up) if s.kind == "sense" and s.table == item.table), None)
    ref: dict[str, Any] = {"table": item.table, "read": item.read}
    if producer is not None:
        ref["source"] = {"task": producer.name, "kind": "stage"}
        # What the producer appended in this run, except for training (the whole table as of the
        # producer's snapshot) or a producer that overwrites (its snapshot is not an append).
        mode = getattr(getattr(producer, "output", None), "mode", "append")
        if not whole and mode == "append":
            ref["source"]["appended"] = True
    elif sensor is not None:
        ref["source"] = {"task": sensor.name, "kind": "sensor"}
    elif item.table in watched:
        ref["source"] = {"kind": "events"}
    else:
        ref["source"] = {"kind": "table"}
    for key in ("columns", "row_filter", "slice_column"):
        if getattr(item, key):
            ref[key] = getattr(item, key)
    return ref


def _stage_arguments(stage: Any, pipeline: Pipeline) -> dict[str, Any]:
    conns = pipeline.connections
    # Pipelines always wait in the triggerer, whatever `[operators] default_deferrable` says.
    args: dict[str, Any] = {
        "ray_conn_id": conns.ray_conn_id,
        "iceberg_conn_id": conns.iceberg_conn_id,
        "deferrable": True,
    }
    if stage.resources:
        res = stage.resources
        if res.num_cpus is not None:
            args["entrypoint_num_cpus"] = res.num_cpus
        if res.num_gpus is not None:
            args["entrypoint_num_gpus"] = res.num_gpus
        if res.memory is not None:
            args["entrypoint_memory"] = res.memory
    if stage.job_timeout:
        args["job_timeout"] = stage.job_timeout
    return args


def _output_arguments(output: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"output_table": output.table, "mode": output.mode}
    if output.keys:
        args["keys"] = list(output.keys)
    if output.slice_column:
        # The interval's start date (a manual run's `ds` is its trigger date, not its interval's).
        args["slice_filter"] = {
            "column": output.slice_column,
            "value": "{{ (data_interval_start or logical_date).strftime('%Y-%m-%d') }}",
        }
    return args


def _task(stage: Any, pipeline: Pipeline, up: list[Any], watched: set[str]) -> TaskNode:
    conns = pipeline.connections
    kind = stage.kind
    if kind == "sense":
        args: dict[str, Any] = {
            "table": stage.table,
            "iceberg_conn_id": conns.iceberg_conn_id,
            "start_from": stage.start_from,
            "min_added_records": stage.min_added_records,
            "poke_interval": stage.poke_interval,
            "soft_fail": stage.soft_fail,
            "deferrable": True,
            "reprocess_params": True,
        }
        if stage.operations is not None:
            args["operations"] = list(stage.operations)
        if stage.timeout is not None:
            args["timeout"] = stage.timeout
        return TaskNode(stage.name, kind, SENSOR, args, reads=[stage.table])
    if kind == "curate" and stage.engine == "spark":
        args = {
            "output_table": stage.output.table,
            "raw_paths": list(stage.raw_paths),
            "iceberg_conn_id": conns.iceberg_conn_id,
            "conn_id": stage.spark_conn_id,
        }
        return TaskNode(stage.name, kind, SPARK_CURATE, args, writes=stage_writes(stage))
    if kind == "ray_job":
        runtime_env = dict(stage.runtime_env or {})
        if stage.working_dir:
            runtime_env["working_dir"] = stage.working_dir
        args = {**_stage_arguments(stage, pipeline), "entrypoint": stage.entrypoint}
        args.pop("iceberg_conn_id")
        if runtime_env:
            args["runtime_env"] = runtime_env
        args["inlet_tables"] = [i.table for i in stage.inputs]
        args["outlet_tables"] = list(stage.outputs)
        return TaskNode(
            stage.name, kind, RAY_JOB, args, reads=[i.table for i in stage.inputs], writes=list(stage.outputs)
        )

    args = {"stage": kind, **_stage_arguments(stage, pipeline)}
    if kind == "curate":
        args.update(_output_arguments(stage.output))
        args["raw_paths"] = list(stage.raw_paths)
        if stage.format != "spark_logs":
            args["stage_params"] = {
                "format": stage.format,
                "schema": dict(stage.schema_ or {}),
                **({"required": list(stage.required)} if stage.required else {}),
                **({"pattern": stage.pattern} if stage.pattern else {}),
            }
        return TaskNode(stage.name, kind, STAGE_OPERATOR, args, writes=stage_writes(stage))
    if kind == "preprocess":
        args["input_refs"] = [_input_ref(stage.input, up, watched)]
        args.update(_output_arguments(stage.output))
        params: dict[str, Any] = {}
        if stage.transforms:
            params["transforms"] = [t.model_dump(exclude_none=True) for t in stage.transforms]
        for key in ("standardize", "minmax", "categorical", "tokenize"):
            if getattr(stage, key):
                params[key] = list(getattr(stage, key))
        if stage.refit:
            params["refit"] = True
        if stage.fit_on != "input":
            params["fit_on"] = stage.fit_on
        args["stage_params"] = params
        return TaskNode(
            stage.name, kind, STAGE_OPERATOR, args, reads=[stage.input.table], writes=stage_writes(stage)
        )
    if kind == "train":
        args["input_refs"] = [_input_ref(stage.features, up, watched, whole=True)]
        args["output_table"] = stage.registry
        args["stage_params"] = {
            "feature_columns": list(stage.feature_columns),
            "label_column": stage.label_column,
            "num_classes": stage.num_classes,
            "model_name": stage.model_name,
            "num_workers": stage.num_workers,
            "use_gpu": stage.use_gpu,
            "epochs": stage.epochs,
            "batch_size": stage.batch_size,
            "lr": stage.lr,
            "hidden": stage.hidden,
            "holdout": stage.holdout,
        }
        if stage.resources_per_worker:
            args["stage_params"]["resources_per_worker"] = dict(stage.resources_per_worker)
        return TaskNode(
            stage.name, kind, STAGE_OPERATOR, args, reads=[stage.features.table], writes=stage_writes(stage)
        )
    if kind == "infer":
        trainer = next((s for s in reversed(up) if s.kind == "train"), None)
        model = stage.model or (trainer.model_name if trainer else None)
        registry = stage.registry or (trainer.registry if trainer else None)
        args["input_refs"] = [_input_ref(stage.input, up, watched)]
        args.update(_output_arguments(stage.output))
        args["stage_params"] = {
            "model_table": registry,
            "model_name": model,
            "model_version": stage.model_version
            or (
                "{{ ti.xcom_pull(task_ids='" + trainer.name + "')['result']['model_version'] }}"
                if trainer and not stage.model
                else "latest"
            ),
            "min_actors": stage.actors.min_size,
            "max_actors": stage.actors.max_size,
            "num_gpus": stage.num_gpus,
            "batch_size": stage.batch_size,
        }
        if stage.carry_columns:
            args["stage_params"]["carry_columns"] = list(stage.carry_columns)
        return TaskNode(
            stage.name,
            kind,
            STAGE_OPERATOR,
            args,
            reads=[stage.input.table, registry],
            writes=stage_writes(stage),
        )
    raise ValueError(f"no task for stage kind {kind!r}")  # pragma: no cover - the models forbid it
