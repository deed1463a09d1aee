"""Lakehouse stage operators: a stage spec built from templated arguments, run as a Ray job."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ray_operators.assets import iceberg_asset
from ray_operators.iceberg_catalog import all_catalog_properties, catalog_properties_for_lineage
from ray_operators.operators.ray_job import RayJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def catalog_properties(iceberg_conn_id: str, every: dict[str, str] | None = None) -> dict[str, str]:
    """Catalog properties of an ``iceberg`` connection, the way ``IcebergHook`` builds them, minus secrets.

    Secrets (S3 keys, REST credentials) would be visible in the Ray dashboard if they travelled in
    the job's entrypoint or metadata, so they stay out: the Ray cluster uses its own credentials
    (instance roles, or environment variables set on the Ray nodes, e.g. ``AWS_ACCESS_KEY_ID`` for
    S3 and ``PYICEBERG_CATALOG__<NAME>__CREDENTIAL`` for a REST catalog).
    """
    from ray_operators.contract.spec import secret_problem

    props = every if every is not None else all_catalog_properties(iceberg_conn_id)

    safe = {}
    for key, value in props.items():
        if problem := secret_problem(key, value):
            log.info("Not sending %s to the Ray job (%s); the cluster must supply it", key, problem)
            continue
        safe[key] = value
    return safe


def run_key_for(
    context: Context,
    task_id: str,
    input_snapshot_ids: Sequence[int] = (),
    *,
    stage: str | None = None,
    input_identity: str | None = None,
) -> str:
    """The run key of one stage run, from the task's context, by the one rule of
    :mod:`ray_operators.contract.run_key` (input snapshots, curation's run, interval, partition,
    pinned snapshots, run id)."""
    from ray_operators.contract.run_key import run_key

    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    return run_key(
        dag_id=context["dag"].dag_id,
        task_id=task_id,
        run_id=context["run_id"],
        stage=stage,
        input_identity=input_identity,
        interval=(start, end) if start is not None and end is not None else None,
        partition_key=getattr(context.get("dag_run"), "partition_key", None),
        pinned_snapshot_ids=input_snapshot_ids,
    )


class LakehouseStageOperator(RayJobOperator):
    """
    Run one lakehouse stage (``ray_operators.jobs``) as a Ray job with a pinned, exactly-once spec.

    Declares the output table (and input tables) as Iceberg assets, so the UI shows table lineage,
    and attaches the committed snapshot ids to the output's asset event.

    :param stage: ``curate``, ``preprocess``, ``train`` or ``infer``.
    :param output_table: ``namespace.table`` the stage writes (templated).
    :param inputs: input tables, each ``{"table", "snapshot_id"}`` or ``{"table",
        "from_snapshot_id", "to_snapshot_id"}`` (templated; e.g. from the sensor's XCom).
    :param raw_paths: raw input locations for the curate stage (templated).
    :param mode: ``append``, ``overwrite`` (of ``slice_filter``'s slice) or ``upsert`` (on ``keys``).
    :param keys: upsert keys.
    :param slice_filter: ``{"column", "value"}``: the slice an overwrite replaces (templated).
    :param stage_params: stage parameters (templated).
    :param iceberg_conn_id: the ``iceberg`` connection whose catalog the job opens.
    :param input_refs: inputs resolved at run time instead of ``inputs``: each ``{"table", "read",
        "source", "columns", "row_filter", "slice_column"}`` (see ``ray_operators.operators.inputs``;
        generated pipelines use these). The run key then follows the resolved snapshots.
    :param run_key: override the run key (templated); see :func:`run_key_for`.
    :param ship_package: send this package to the cluster with ``runtime_env["py_modules"]`` (for a
        stock Ray cluster that lacks it). Default: the ``RAY_LAKEHOUSE_SHIP_PACKAGE`` environment
        variable (``true`` in the docker-compose stack).
    """

    #: The stage runner reports its result and leaves at once (``jobs/run_stage.py``): the log is
    #: complete once a succeeded job's result line is read.
    result_ends_log = True
    template_fields: Sequence[str] = (
        *RayJobOperator.template_fields,
        "output_table",
        "inputs",
        "raw_paths",
        "slice_filter",
        "stage_params",
        "run_key",
        "input_refs",
    )
    template_fields_renderers = {
        **RayJobOperator.template_fields_renderers,
        "stage_params": "json",
        "inputs": "json",
        "input_refs": "json",
    }

    def __init__(
        self,
        *,
        stage: str,
        output_table: str,
        inputs: list[dict[str, Any]] | str | None = None,
        raw_paths: list[str] | str | None = None,
        mode: str = "append",
        keys: list[str] | None = None,
        slice_filter: dict[str, Any] | None = None,
        stage_params: dict[str, Any] | None = None,
        iceberg_conn_id: str = "iceberg_default",
        run_key: str | None = None,
        ship_package: bool | None = None,
        input_refs: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [iceberg_asset(output_table, iceberg_conn_id=iceberg_conn_id)])
        super().__init__(entrypoint="(built at run time from the stage spec)", **kwargs)
        self.stage = stage
        self.output_table = output_table
        self.inputs = inputs
        self.raw_paths = raw_paths
        self.mode = mode
        self.keys = keys or []
        self.slice_filter = slice_filter
        self.stage_params = stage_params or {}
        self.iceberg_conn_id = iceberg_conn_id
        self.run_key = run_key
        #: The connection's catalog properties, read once per process (spec and lineage).
        self._lineage_catalog: dict[str, str] | None = None
        if ship_package is None:
            import os

            ship_package = os.environ.get("RAY_LAKEHOUSE_SHIP_PACKAGE", "").lower() in ("1", "true", "yes")
        self.ship_package = ship_package
        self.input_refs = input_refs

    def build_spec(self, context: Context) -> dict[str, Any]:
        from ray_operators.contract.spec import StageSpec, TableInput

        identity = None
        if self.input_refs:
            from ray_operators.operators.inputs import resolve_inputs

            resolved, identity = resolve_inputs(self.input_refs, context, self.iceberg_conn_id)
            inputs = [TableInput(**item) for item in resolved]
            self.log.info("Inputs resolved: %s", [i.__dict__ for i in inputs])
        else:
            inputs = [TableInput(**item) for item in _as_list(self.inputs)]
        snapshot_ids = [s for i in inputs for s in i.identity()]
        ti = context["ti"]
        # Input snapshots name the run when they came from a sensor, a stage, events or the UI.
        run_key = self.run_key or run_key_for(
            context, self.task_id, snapshot_ids, stage=self.stage, input_identity=identity
        )
        params = dict(self.stage_params)
        if self.stage == "preprocess" and _truthy((context.get("params") or {}).get("refit")):
            # A run triggered with refit: a new fitted state, the whole output table rewritten. It
            # is its own write (not the plain run of the same inputs, which may be committed).
            params["refit"] = True
        if self.stage == "preprocess" and _truthy(params.get("refit")):
            from ray_operators.contract.run_key import derived

            run_key = derived(run_key, "refit")
        spec = StageSpec(
            stage=self.stage,
            catalog_name=self.iceberg_conn_id,
            catalog_properties=catalog_properties(self.iceberg_conn_id, self._lineage_catalog),
            output_table=self.output_table,
            mode=self.mode,
            inputs=inputs,
            raw_paths=[str(p) for p in _as_list(self.raw_paths)],
            keys=list(self.keys),
            slice_filter=self.slice_filter,
            run={
                "run_key": run_key,
                "dag_id": ti.dag_id,
                "run_id": ti.run_id,
                "task_id": ti.task_id,
            },
            params=params,
        )
        # Validate here, params included: a bad spec fails before submission.
        StageSpec.from_json(spec.to_json()).typed_params()
        return spec.to_json()

    def execute(self, context: Context) -> dict[str, Any]:
        from ray_operators.contract.spec import StageSpec

        self.remember_for_lineage()
        spec = StageSpec.from_json(self.build_spec(context))
        self.entrypoint = f"python -m ray_operators.jobs.run_stage --spec {spec.encode()}"
        if self.ship_package:
            import ray_operators

            runtime_env = dict(self.runtime_env or {})
            runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), ray_operators.__path__[0]]
            self.runtime_env = runtime_env
        self.log.info("Stage %s, run key %s, output %s", spec.stage, spec.run_key, spec.output_table)
        return self._record(context, super().execute(context))

    def succeeded_job_still_holds(self, info: dict[str, Any]) -> bool:
        """A finished stage job answers a cleared or retried task only while the snapshot it
        committed is still on the output table's branch. After a rollback of that table, the
        re-run submits the job again, and the job (exactly once by run key, on the branch) writes
        again instead of reporting the rolled-back snapshot."""
        from ray_operators.contract.result import parse_result
        from ray_operators.iceberg_catalog import build_catalog
        from ray_operators.iceberg_snapshots import ancestors

        result = parse_result(self.hook.get_job_logs(str(info["submission_id"]))) or {}
        output = result.get("output") or {}
        snapshot_id, table = output.get("snapshot_id"), output.get("table") or self.output_table
        if snapshot_id is None:
            return True  # nothing committed (nothing to write): nothing a rollback could undo
        metadata = build_catalog(self.iceberg_conn_id).load_table(table).metadata
        if any(s.snapshot_id == int(snapshot_id) for s in ancestors(metadata)):
            return True
        self.log.warning(
            "Ray job %s committed snapshot %s of %s, which is no longer on its branch (rolled back): "
            "running the stage again",
            info["submission_id"],
            snapshot_id,
            table,
        )
        return False

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self._record(context, super().execute_complete(context, event))

    # ---- OpenLineage ---------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """What the stage read (each input table at the snapshot it pinned, or a curation's raw
        roots) and wrote (the output table, and curation's quarantine, at the
        snapshots committed), with the Ray job, run key and fitted state as the run's facet."""
        return self._stage_lineage(self._final)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """The same datasets, without output versions (a failed stage commits nothing), and the
        failed Ray job."""
        return self._stage_lineage(None)

    def stage_spec(self) -> Any | None:
        """The spec this task's job ran, from its entrypoint (this process's, or Ray's record of
        the job when the task resumed after deferring); None when nothing was submitted."""
        from ray_operators.contract.spec import StageSpec

        for entrypoint in (
            self.entrypoint,
            (self.ended_job_info() if self._submission_id else {}).get("entrypoint"),
        ):
            words = str(entrypoint or "").split()
            if "--spec" in words[:-1]:
                try:
                    return StageSpec.decode(words[words.index("--spec") + 1])
                except Exception:  # not ours: ignore
                    continue
        return None

    def remember_for_lineage(self) -> None:
        """Read, in the task's own process, what lineage needs later from connections (the
        listener builds events in a forked child, which must not call the task's supervisor)."""
        super().remember_for_lineage()
        if self._lineage_catalog is None:
            self._lineage_catalog = catalog_properties_for_lineage(self.iceberg_conn_id, self.log)

    def _stage_lineage(self, value: dict[str, Any] | None) -> Any:
        from ray_operators.lineage.openlineage import (
            iceberg_dataset,
            lineage,
            location_dataset,
            open_catalog,
            pinned_versions,
        )

        spec = self.stage_spec()
        result = (value or {}).get("result") or {}
        catalog = open_catalog(self.iceberg_conn_id, self._lineage_catalog)
        if spec is not None:
            read = [dict(i.__dict__) for i in spec.inputs]
            raw = [str(p) for p in spec.raw_paths]
        else:  # failed before submitting: what the task was given, where it is known
            try:
                read = [i for i in _as_list(self.inputs) if isinstance(i, dict) and i.get("table")]
                raw = [str(p) for p in _as_list(self.raw_paths)]
            except Exception:  # unrendered or malformed: the error says so elsewhere
                read, raw = [], []
        named = self.iceberg_conn_id
        inputs = [iceberg_dataset(catalog, i["table"], pinned_versions(i), catalog_name=named) for i in read]
        inputs += [location_dataset(p) for p in raw]
        written = [result[k] for k in ("output", "quarantine") if isinstance(result.get(k), dict)]
        outputs = [
            iceberg_dataset(catalog, w["table"], w.get("snapshot_id"), output=True, catalog_name=named)
            for w in written or [{"table": spec.output_table if spec else self.output_table}]
            if w.get("table")
        ]
        state = result.get("state") or {}
        version = state.get("version") if isinstance(state, dict) else None
        facet = self.ray_run_facet(
            stage=self.stage,
            runKey=spec.run_key if spec is not None else None,
            fittedStateVersion=int(version) if version is not None else None,
        )
        return lineage(inputs, outputs, facet)

    def _record(self, context: Context, value: dict[str, Any]) -> dict[str, Any]:
        """Attach the committed snapshot to the output asset's event."""
        result = value.get("result") or {}
        output = result.get("output") or {}
        asset = iceberg_asset(self.output_table, iceberg_conn_id=self.iceberg_conn_id)
        try:
            context["outlet_events"][asset].extra = {
                "table": self.output_table,
                "snapshot_id": output.get("snapshot_id"),
                "snapshot_ids": [output["snapshot_id"]] if output.get("snapshot_id") else [],
                "rows": output.get("rows"),
                "ray_submission_id": value.get("submission_id"),
            }
        except (KeyError, TypeError) as err:  # not declared as an outlet
            self.log.info("No outlet event for %s: %s", self.output_table, err)
        return value


def _truthy(value: Any) -> bool:
    """A flag from params or a rendered template (``True``, ``"true"``, ``"True"``, ``1``)."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_list(value: Any) -> list[Any]:
    if value in (None, "", "None"):
        return []
    if isinstance(value, str):
        import json

        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [value]
        return parsed if isinstance(parsed, list) else [parsed]
    return list(value)
