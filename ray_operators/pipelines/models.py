"""The pipeline spec: typed models for one lakehouse pipeline per YAML file.

Unknown keys are errors everywhere (``extra="forbid"``). The JSON Schema for editors is generated
from these models (``ray-lakehouse schema``) and committed as ``pipeline.schema.json``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ray_operators.contract.params import InferParams, PreprocessParams, TrainParams

NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
TABLE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
Table = Annotated[str, Field(pattern=TABLE, description="`namespace.table`")]


#: Stage defaults live in the contract (one place), shared with the jobs.
_PREPROCESS, _TRAIN, _INFER = PreprocessParams(), TrainParams(), InferParams()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


# ---- schedule ------------------------------------------------------------------------------


Operation = Literal["append", "overwrite", "delete", "replace"]
#: Compaction (``replace``) rewrites files without new data: it starts no run unless asked to.
DEFAULT_OPERATIONS: tuple[Operation, ...] = ("append", "overwrite", "delete")


class WatchedTable(Strict):
    table: Table
    operations: list[Operation] = Field(
        default_factory=lambda: list(DEFAULT_OPERATIONS),
        description="snapshot operations that start a run (compaction `replace` is left out by default)",
    )
    min_added_records: int = Field(0, ge=0)
    poll_interval: float = Field(30.0, gt=0, description="seconds between catalog polls in the triggerer")


class Schedule(Strict):
    """Exactly one of ``cron`` (a cron expression or preset) and ``on_snapshot``; or no schedule."""

    cron: str | None = Field(None, description="cron expression or preset such as `@daily`")
    on_snapshot: list[WatchedTable] | None = Field(
        None, description="tables whose new snapshots start a run (AssetWatcher on the snapshot trigger)"
    )
    catchup: bool = Field(False, description="time-based only: create runs for missed intervals")

    @field_validator("on_snapshot", mode="before")
    @classmethod
    def _tables(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"table": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("@"):
            if value not in PRESETS:
                raise ValueError(f"unknown preset {value!r}; presets are {', '.join(PRESETS)}")
            return value
        fields = value.split()
        if len(fields) not in (5, 6) or not all(re.fullmatch(r"[\d*/,\-A-Za-z?LW#]+", f) for f in fields):
            raise ValueError(
                f"{value!r} is not a cron expression (five fields: minute hour day month weekday)"
            )
        return value

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if self.cron and self.on_snapshot:
            raise ValueError("give either `cron` or `on_snapshot`, not both")
        if self.on_snapshot is not None and not self.on_snapshot:
            raise ValueError("`on_snapshot` needs at least one table")
        return self

    @property
    def kind(self) -> str:
        return "cron" if self.cron else "on_snapshot" if self.on_snapshot else "none"


class Connections(Strict):
    ray_conn_id: str = "ray_default"
    iceberg_conn_id: str = "iceberg_default"


class Param(Strict):
    """A run parameter a UI trigger can set."""

    type: Literal["string", "integer", "number", "boolean", "array", "object", "null"] | list[str] = "string"
    default: Any = None
    description: str | None = None
    items: dict[str, Any] | None = None
    enum: list[Any] | None = None


# ---- stages --------------------------------------------------------------------------------


class Resources(Strict):
    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    memory: int | None = Field(None, ge=0, description="bytes")


class StageBase(Strict):
    name: str = Field(pattern=NAME, description="task id in the DAG")
    depends_on: list[str] | None = Field(None, description="stage names; default: the previous stage")
    retries: int | None = Field(None, ge=0)
    resources: Resources | None = Field(None, description="for the Ray job's entrypoint")
    job_timeout: float | None = Field(None, gt=0, description="seconds; the job is stopped after it")
    description: str | None = None

    @field_validator("depends_on", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class TableRef(Strict):
    """A table given as a mapping, or as just its name (``input: ns.table``)."""

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"table": value} if isinstance(value, str) else value


class InputTable(TableRef):
    table: Table
    read: Literal["pinned", "as_of_interval_end", "interval_commits", "current"] = Field(
        "pinned",
        description=(
            "`pinned`: the snapshots the sensor, the triggering asset events, the producing stage or "
            "the run's params hand over (else the current snapshot); `as_of_interval_end`: time travel "
            "to the snapshot current at the end of the run's data interval; `interval_commits`: the "
            "append snapshots committed within the interval; `current`: the head when the run starts"
        ),
    )
    columns: list[str] | None = None
    row_filter: str | None = None
    slice_column: str | None = Field(
        None, description="keep only rows whose column lies in the run's data interval"
    )


class Transform(Strict):
    fn: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="`package.module:function_or_class`"
    )
    batch_size: int | None = Field(None, gt=0)
    batch_format: Literal["pandas", "pyarrow", "numpy", "default"] = "pandas"
    concurrency: int | None = Field(None, gt=0)
    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    kwargs: dict[str, Any] | None = None


class Output(TableRef):
    table: Table
    mode: Literal["append", "overwrite", "upsert"] = "append"
    keys: list[str] | None = None
    slice_column: str | None = Field(
        None, description="overwrite only this column's slice: the run's data interval start date"
    )

    @model_validator(mode="after")
    def _keys(self) -> Output:
        if self.mode == "upsert" and not self.keys:
            raise ValueError("mode `upsert` needs `keys`")
        return self


class SenseStage(StageBase):
    kind: Literal["sense"]
    table: Table
    start_from: Literal["auto", "data_interval", "previous_run", "latest", "incremental"] = Field(
        "auto",
        description=(
            "`incremental`: after the previous run's last snapshot, the first run takes the whole "
            "history; `previous_run`: the same, but a first run waits for a new snapshot; "
            "`data_interval`: snapshots after the interval start; `latest`: only new ones; "
            "`auto`: data_interval for time-based runs, else previous_run"
        ),
    )
    operations: list[Literal["append", "overwrite", "delete", "replace"]] | None = None
    min_added_records: int = Field(0, ge=0)
    poke_interval: float = Field(30.0, gt=0)
    timeout: float | None = Field(None, gt=0, description="seconds before the sensor gives up")
    soft_fail: bool = False


class CurateStage(StageBase):
    kind: Literal["curate"]
    raw_paths: list[str] = Field(
        min_length=1, description="raw roots; relative paths are relative to the spec file"
    )
    output: Output
    format: Literal["spark_logs", "csv", "json", "parquet"] = Field(
        "spark_logs", description="`spark_logs` folders, or files typed by `schema`"
    )
    schema_: (
        dict[str, Literal["string", "long", "int", "double", "float", "boolean", "timestamp", "date"]] | None
    ) = Field(None, alias="schema", description="csv/json/parquet: `{column: type}`")
    required: list[str] | None = Field(None, description="columns that may not be empty (default: all)")
    pattern: str | None = Field(None, description="file glob under each raw root (default `**/*.<format>`)")
    engine: Literal["ray", "spark"] = "ray"
    spark_conn_id: str = "spark_default"

    @model_validator(mode="after")
    def _format(self) -> CurateStage:
        if self.format != "spark_logs" and not self.schema_:
            raise ValueError(f"format `{self.format}` needs a `schema`: {{column: type}}")
        if self.format == "spark_logs" and self.schema_:
            raise ValueError("`schema` applies to csv, json and parquet; spark_logs has its own")
        if self.required and self.schema_ and (unknown := sorted(set(self.required) - set(self.schema_))):
            raise ValueError(f"`required` names columns not in `schema`: {unknown}")
        if self.engine == "spark" and self.format != "spark_logs":
            raise ValueError("the Spark engine curates `spark_logs` only")
        return self

    @field_validator("raw_paths", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class PreprocessStage(StageBase):
    kind: Literal["preprocess"]
    input: InputTable
    output: Output
    transforms: list[Transform] = Field(default_factory=list)
    standardize: list[str] = Field(default_factory=list)
    minmax: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    tokenize: list[str] = Field(default_factory=list)
    refit: bool = Field(
        _PREPROCESS.refit,
        description="every run fits a new state (the next version) instead of applying the current "
        "one, and rewrites the whole output table with it in one overwrite commit; to refit once, "
        "trigger a run with the param `refit: true` instead",
    )
    fit_on: Literal["input", "table"] = Field(
        _PREPROCESS.fit_on,  # type: ignore[arg-type]
        description="what a fit uses: `input`, the run's input, or `table`, the whole input table as "
        "of the run's input snapshot",
    )


class TrainStage(StageBase):
    kind: Literal["train"]
    features: InputTable | None = Field(None, description="the feature table to train on")
    feature_columns: list[str] = Field(min_length=1)
    label_column: str
    num_classes: int = Field(_TRAIN.num_classes, ge=2)
    model_name: str = Field(pattern=NAME)
    registry: Table = Field(description="model-registry table the stage appends to")
    num_workers: int = Field(_TRAIN.num_workers, ge=1)
    use_gpu: bool | Literal["auto"] = "auto" if _TRAIN.use_gpu == "auto" else bool(_TRAIN.use_gpu)
    resources_per_worker: dict[str, float] | None = None
    epochs: int = Field(_TRAIN.epochs, ge=1)
    batch_size: int = Field(_TRAIN.batch_size, ge=1)
    lr: float = Field(_TRAIN.lr, gt=0)
    hidden: int = Field(_TRAIN.hidden, ge=1)
    holdout: float = Field(_TRAIN.holdout, gt=0, lt=1)


class ActorPool(Strict):
    min_size: int = Field(_INFER.min_actors, ge=1)
    max_size: int = Field(_INFER.max_actors, ge=1)

    @model_validator(mode="after")
    def _order(self) -> ActorPool:
        if self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) is smaller than min_size ({self.min_size})")
        return self


class InferStage(StageBase):
    kind: Literal["infer"]
    input: InputTable
    model: str | None = Field(None, description="model name in the registry")
    model_version: int | None = Field(None, ge=1, description="default: the latest")
    registry: Table | None = None
    output: Output
    actors: ActorPool = Field(default_factory=ActorPool)
    num_gpus: float = Field(_INFER.num_gpus, ge=0)
    batch_size: int = Field(_INFER.batch_size, ge=1)
    carry_columns: list[str] = Field(default_factory=list)


class RayJobStage(StageBase):
    kind: Literal["ray_job"]
    entrypoint: str = Field(min_length=1)
    working_dir: str | None = Field(None, description="shipped with runtime_env; relative to the spec file")
    runtime_env: dict[str, Any] | None = None
    inputs: list[InputTable] = Field(default_factory=list, description="tables it reads (lineage, checks)")
    outputs: list[Table] = Field(default_factory=list, description="tables it writes (assets)")


Stage = Annotated[
    SenseStage | CurateStage | PreprocessStage | TrainStage | InferStage | RayJobStage,
    Field(discriminator="kind"),
]
#: Each stage kind's model (the ``kind`` discriminator's value -> the class it selects).
STAGE_MODELS: dict[str, type[StageBase]] = {
    "sense": SenseStage,
    "curate": CurateStage,
    "preprocess": PreprocessStage,
    "train": TrainStage,
    "infer": InferStage,
    "ray_job": RayJobStage,
}
STAGE_KINDS = tuple(STAGE_MODELS)


class Pipeline(Strict):
    """One lakehouse pipeline: becomes one Airflow DAG whose id is ``name``."""

    schema_: str | None = Field(None, alias="$schema", description="path or URL of this file's JSON Schema")
    name: str = Field(pattern=NAME)
    description: str | None = None
    owner: str = "airflow"
    tags: list[str] = Field(default_factory=list)
    schedule: Schedule | None = None
    start_date: date | datetime = Field(description="first data interval (UTC unless it has an offset)")
    retries: int = Field(1, ge=0)
    retry_delay: float = Field(60.0, ge=0, description="seconds")
    max_active_runs: int = Field(1, ge=1)
    connections: Connections = Field(default_factory=Connections)
    params: dict[str, Param] = Field(default_factory=dict)
    stages: list[Stage] = Field(min_length=1)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if value in (None, "none", "None", "manual"):
            return None
        if isinstance(value, str):
            return {"cron": value}
        return value

    @field_validator("retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
            if not match:
                raise ValueError(f"{value!r} is not a duration: use seconds or a number with s, m, h or d")
            return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return value

    def stage(self, name: str) -> Any:
        return next(s for s in self.stages if s.name == name)


def json_schema() -> dict[str, Any]:
    schema = Pipeline.model_json_schema(by_alias=True)
    _shorthands(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/airflow-provider-ray-lakehouse/pipeline.schema.json"
    schema["title"] = "Ray lakehouse pipeline"
    return schema


#: Keys that also take a short form the models expand before validation.
_TABLE_SHORTHAND = ("input", "features", "output")
_STRING_SHORTHAND = ("raw_paths", "depends_on", "schedule", "on_snapshot")


def _shorthands(node: Any) -> None:
    """Teach the JSON Schema the short forms (``input: ns.table``, ``schedule: "@daily"``...)."""
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            if name in _TABLE_SHORTHAND:
                _add_alternative(prop, {"type": "string", "pattern": TABLE})
            elif name in _STRING_SHORTHAND:
                _add_alternative(prop, {"type": "string"})
            elif name == "retry_delay":
                _add_alternative(prop, {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhd]?\s*$"})
            if name == "on_snapshot":
                for option in prop.get("anyOf", []):
                    if option.get("type") == "array":
                        option["items"] = {"anyOf": [option["items"], {"type": "string", "pattern": TABLE}]}
        for value in node.values():
            _shorthands(value)
    elif isinstance(node, list):
        for value in node:
            _shorthands(value)


def _add_alternative(prop: dict[str, Any], alternative: dict[str, Any]) -> None:
    if "anyOf" in prop:
        if alternative not in prop["anyOf"]:
            prop["anyOf"].append(alternative)
        return
    base = {k: prop.pop(k) for k in list(prop) if k not in ("description", "title", "default")}
    prop["anyOf"] = [base, alternative]
