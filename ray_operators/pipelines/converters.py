"""One converter per stage kind: a validated stage -> the :class:`TaskNode` of its Airflow task.

The registry maps a stage's kind (and, for curation, its engine) to the function that converts
it, the way astronomer-cosmos maps dbt node types to operator classes. Each converter returns a
node that carries everything the DAG builder needs: the operator's import path, its arguments as
plain JSON, and the tables the task reads and writes (drawn by the CLI) and declares as its asset
inlets and outlets. The builder adds no rule of its own.

A new stage kind is a model in :mod:`ray_operators.pipelines.models`, its tables in
:mod:`ray_operators.pipelines.topology`, and one ``@converts(...)`` function here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray_operators.pipelines.models import Pipeline
from ray_operators.pipelines.topology import stage_outputs, stage_reads, stage_writes

STAGE_OPERATOR = "ray_operators.operators.lakehouse.LakehouseStageOperator"
SENSOR = "ray_operators.sensors.iceberg.IcebergSnapshotSensor"
SPARK_CURATE = "ray_operators.operators.spark_curate.SparkCurateOperator"
RAY_JOB = "ray_operators.operators.ray_job.RayJobOperator"


@dataclass
class TaskNode:
    """One Airflow task, as plain data: ``reads``/``writes`` are every table the task touches;
    ``inlets``/``outlets`` are the tables it declares as Airflow assets."""

    task_id: str
    kind: str
    operator: str
    arguments: dict[str, Any]
    upstream: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    inlets: list[str] = field(default_factory=list)
    outlets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StageContext:
    """What a converter may look at besides its stage: the pipeline, the stages the stage runs
    after (:func:`~ray_operators.pipelines.topology.ancestors` order) and the tables the
    schedule watches."""

    pipeline: Pipeline
    upstream: list[Any]
    watched: frozenset[str]

    def nearest(self, test: Callable[[Any], bool]) -> Any | None:
        """The nearest upstream stage that passes ``test``."""
        return next((s for s in reversed(self.upstream) if test(s)), None)


Converter = Callable[[Any, StageContext], TaskNode]
_CONVERTERS: dict[tuple[str, str | None], Converter] = {}


def converts(kind: str, *, engine: str | None = None) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of ``kind`` stages (run by ``engine``)."""

    def register(fn: Converter) -> Converter:
        if (kind, engine) in _CONVERTERS:
            raise ValueError(f"a converter for stage kind {kind!r} (engine {engine!r}) is registered already")
        _CONVERTERS[(kind, engine)] = fn
        return fn

    return register


def converter_for(stage: Any) -> Converter:
    engine = getattr(stage, "engine", None)
    found = _CONVERTERS.get((stage.kind, engine)) or _CONVERTERS.get((stage.kind, None))
    if found is None:  # pragma: no cover - every kind the models accept is registered below
        raise ValueError(f"no converter for stage kind {stage.kind!r} (engine {engine!r})")
    return found


def convert(stage: Any, ctx: StageContext) -> TaskNode:
    """The stage's task node, with the arguments every kind shares (retries, doc)."""
    node = converter_for(stage)(stage, ctx)
    if stage.retries is not None:
        node.arguments["retries"] = stage.retries
    if stage.description:
        node.arguments["doc_md"] = stage.description
    return node


# ---- arguments several kinds share -------------------------------------------------------------


def _input_ref(item: Any, ctx: StageContext, whole: bool = False) -> dict[str, Any]:
    """Where a stage's input snapshot comes from at run time (resolved by the operator)."""
    producer = ctx.nearest(lambda s: item.table in stage_writes(s))
    sensor = ctx.nearest(lambda s: s.kind == "sense" and s.table == item.table)
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
    elif item.table in ctx.watched:
        ref["source"] = {"kind": "events"}
    else:
        ref["source"] = {"kind": "table"}
    for key in ("columns", "row_filter", "slice_column"):
        if getattr(item, key):
            ref[key] = getattr(item, key)
    return ref


def _job_arguments(stage: Any, pipeline: Pipeline) -> dict[str, Any]:
    """The connections, deferral, resources and timeout of a task that submits a Ray job."""
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


def _stage_node(stage: Any, args: dict[str, Any], *, reads: list[str | None]) -> TaskNode:
    """A :class:`~ray_operators.operators.lakehouse.LakehouseStageOperator` task: its inlets are
    the tables it reads, its outlet the table it publishes."""
    return TaskNode(
        stage.name,
        stage.kind,
        STAGE_OPERATOR,
        {"stage": stage.kind, **args},
        reads=[t for t in reads if t],
        writes=stage_writes(stage),
        inlets=[t for t in reads if t],
        outlets=stage_outputs(stage),
    )


# ---- the converters ----------------------------------------------------------------------------


@converts("sense")
def sense(stage: Any, ctx: StageContext) -> TaskNode:
    args: dict[str, Any] = {
        "table": stage.table,
        "iceberg_conn_id": ctx.pipeline.connections.iceberg_conn_id,
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
    # It watches the table; its snapshots reach the stages after it, whose inlets it is.
    return TaskNode(stage.name, stage.kind, SENSOR, args, reads=[stage.table])


@converts("curate", engine="spark")
def curate_on_spark(stage: Any, ctx: StageContext) -> TaskNode:
    args = {
        "output_table": stage.output.table,
        "raw_paths": list(stage.raw_paths),
        "iceberg_conn_id": ctx.pipeline.connections.iceberg_conn_id,
        "conn_id": stage.spark_conn_id,
    }
    return TaskNode(
        stage.name, stage.kind, SPARK_CURATE, args, writes=stage_writes(stage), outlets=stage_outputs(stage)
    )


@converts("curate", engine="ray")
def curate(stage: Any, ctx: StageContext) -> TaskNode:
    args = {**_job_arguments(stage, ctx.pipeline), **_output_arguments(stage.output)}
    args["raw_paths"] = list(stage.raw_paths)
    if stage.format != "spark_logs":
        args["stage_params"] = {
            "format": stage.format,
            "schema": dict(stage.schema_ or {}),
            **({"required": list(stage.required)} if stage.required else {}),
            **({"pattern": stage.pattern} if stage.pattern else {}),
        }
    return _stage_node(stage, args, reads=[])


@converts("preprocess")
def preprocess(stage: Any, ctx: StageContext) -> TaskNode:
    args = {**_job_arguments(stage, ctx.pipeline), "input_refs": [_input_ref(stage.input, ctx)]}
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
    return _stage_node(stage, args, reads=list(stage_reads(stage)))


@converts("train")
def train(stage: Any, ctx: StageContext) -> TaskNode:
    args = {
        **_job_arguments(stage, ctx.pipeline),
        "input_refs": [_input_ref(stage.features, ctx, whole=True)],
        "output_table": stage.registry,
        "stage_params": {
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
        },
    }
    if stage.resources_per_worker:
        args["stage_params"]["resources_per_worker"] = dict(stage.resources_per_worker)
    return _stage_node(stage, args, reads=list(stage_reads(stage)))


@converts("infer")
def infer(stage: Any, ctx: StageContext) -> TaskNode:
    trainer = ctx.nearest(lambda s: s.kind == "train")
    model = stage.model or (trainer.model_name if trainer else None)
    registry = stage.registry or (trainer.registry if trainer else None)
    args = {**_job_arguments(stage, ctx.pipeline), "input_refs": [_input_ref(stage.input, ctx)]}
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
    # It reads the model registry too: the model's table is one of its inlets.
    return _stage_node(stage, args, reads=[*stage_reads(stage), registry])


@converts("ray_job")
def ray_job(stage: Any, ctx: StageContext) -> TaskNode:
    runtime_env = dict(stage.runtime_env or {})
    if stage.working_dir:
        runtime_env["working_dir"] = stage.working_dir
    args = {**_job_arguments(stage, ctx.pipeline), "entrypoint": stage.entrypoint}
    args.pop("iceberg_conn_id")  # a plain job reads and writes what its code does
    if runtime_env:
        args["runtime_env"] = runtime_env
    reads = stage_reads(stage)
    return TaskNode(
        stage.name,
        stage.kind,
        RAY_JOB,
        args,
        reads=reads,
        writes=stage_writes(stage),
        inlets=reads,
        outlets=stage_outputs(stage),
    )
