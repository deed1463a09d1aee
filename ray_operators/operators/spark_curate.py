"""The Spark variant of the curate stage, through the Spark provider's ``SparkSubmitOperator``.

Needs the ``spark`` extra (``apache-airflow-providers-apache-spark``) and a ``spark`` connection.
The Spark driver and executors need Python 3.11 with this package's dependencies (pyarrow and
pyiceberg: discovery and the ancestry walk run in the driver, the shared parser in the tasks).

Where the Iceberg Spark runtime comes from, unless ``jars`` or ``packages`` is given: the local
runtime ``make install`` puts in ``.venv/spark`` (:mod:`ray_operators.spark.runtime`: Spark 3.5.9,
Iceberg 1.10.2, the SQLite JDBC driver; its ``spark-submit`` goes first on ``PATH`` unless
``SPARK_HOME`` is set), else Maven (:data:`ray_operators.spark.conf.ICEBERG_SPARK_PACKAGES`).

What the operator adds to ``SparkSubmitOperator``:
- the stage spec (the same contract as :class:`LakehouseStageOperator`'s, and the same run key:
  curation is keyed by run), passed as ``--spec``; the application is
  :mod:`ray_operators.spark.curate_spark_logs` and this package travels as a zip on ``--py-files``;
- ``spark.sql.catalog.<iceberg_conn_id>.*`` from the ``iceberg`` connection, so Spark writes the
  very catalog Airflow's sensors read. Secret catalog properties (S3 keys, REST credentials,
  database passwords) go into a private ``--properties-file`` (mode 0600, deleted after the run),
  never onto the command line;
- the output table as an outlet asset, so a sensor or an asset-driven pipeline downstream of a
  Spark-curated table works exactly as for the Ray variant; its event carries the snapshot the run
  committed, found by run key on the table's branch (also the task's return value).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "SparkCurateOperator needs the Spark provider: pip install 'airflow-provider-ray-lakehouse[spark]'"
    ) from err

from ray_operators.assets import iceberg_asset
from ray_operators.iceberg_catalog import all_catalog_properties
from ray_operators.operators.lakehouse import catalog_properties, run_key_for

if TYPE_CHECKING:
    from airflow.sdk import Context

APPLICATION = str(Path(__file__).resolve().parents[1] / "spark" / "curate_spark_logs.py")


def package_zip(folder: str | os.PathLike[str]) -> str:
    """Zip ``ray_operators`` (Python sources only) into ``folder`` for ``--py-files``."""
    package = Path(__file__).resolve().parents[1]
    target = Path(folder) / "ray_operators.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*.py")):
            archive.write(path, Path("ray_operators") / path.relative_to(package))
    return str(target)


class SparkCurateOperator(SparkSubmitOperator):
    """
    Curate raw Spark application logs into Iceberg tables with a Spark job.

    :param output_table: ``namespace.table`` to write (templated); ``_quarantine`` and
        ``_processing`` tables are written next to it.
    :param raw_paths: the raw roots holding ``spark-*`` folders, one or a list (templated; local
        paths, ``file://``, or ``s3://``/``s3a://`` where Spark has ``hadoop-aws``).
    :param iceberg_conn_id: the ``iceberg`` connection; its id is the Spark catalog name.
    :param run_key: override the run key (templated); see ``run_key_for``.
    Other keyword arguments go to ``SparkSubmitOperator`` (``conn_id``, ``packages``, resources...).
    """

    template_fields: Sequence[str] = (
        *SparkSubmitOperator.template_fields,
        "output_table",
        "raw_paths",
        "run_key",
    )

    def __init__(
        self,
        *,
        output_table: str,
        raw_paths: str | list[str],
        iceberg_conn_id: str = "iceberg_default",
        run_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("application", APPLICATION)
        kwargs.setdefault("outlets", [iceberg_asset(output_table, iceberg_conn_id=iceberg_conn_id)])
        kwargs.setdefault("name", "curate-{{ ti.dag_id }}-{{ ti.task_id }}")
        super().__init__(**kwargs)
        self.output_table = output_table
        self.raw_paths = raw_paths
        self.iceberg_conn_id = iceberg_conn_id
        self.run_key = run_key
        #: This run's spec (encoded) and what it committed, for lineage.
        self._encoded_spec: str | None = None
        self._recorded: dict[str, Any] | None = None
        self._lineage_catalog: dict[str, str] | None = None

    def build_spec(self, context: Context) -> str:
        from ray_operators.contract.spec import StageSpec

        raw = [self.raw_paths] if isinstance(self.raw_paths, str) else list(self.raw_paths)
        ti = context["ti"]
        spec = StageSpec(
            stage="curate",
            catalog_name=self.iceberg_conn_id,
            catalog_properties=catalog_properties(self.iceberg_conn_id, self._lineage_catalog),
            output_table=self.output_table,
            raw_paths=[str(p) for p in raw],
            run={
                "run_key": self.run_key or run_key_for(context, self.task_id, stage="curate"),
                "dag_id": ti.dag_id,
                "run_id": ti.run_id,
                "task_id": ti.task_id,
            },
        )
        return spec.encode()

    def _runtime_defaults(self, properties: dict[str, str]) -> None:
        """The Iceberg runtime (and, for the local runtime, ``spark-submit`` and Python) to use."""
        import os

        from ray_operators.spark.conf import ICEBERG_SPARK_PACKAGES
        from ray_operators.spark.runtime import local_runtime

        if self.jars or self.packages:
            return
        runtime = local_runtime(sqlite=_sqlite_catalog(properties))
        if runtime is None:
            self.packages = ICEBERG_SPARK_PACKAGES
            return
        self.jars = ",".join(runtime.jars())
        if not os.environ.get("SPARK_HOME"):
            self.env_vars = {**runtime.env(), **(self.env_vars or {})}

    # SparkSubmitOperator returns None; this one returns the curation's result (the task's XCom).
    def execute(self, context: Context) -> dict[str, Any]:  # type: ignore[override]
        from ray_operators.spark.conf import spark_catalog_conf

        # Read once: the spec and lineage use them too (the listener's forked child must not call
        # the task's supervisor).
        properties = self._lineage_catalog = all_catalog_properties(self.iceberg_conn_id)
        self._runtime_defaults(properties)
        public, secret = spark_catalog_conf(self.iceberg_conn_id, properties)
        self.conf = {**(self.conf or {}), **public}
        spec = self._encoded_spec = self.build_spec(context)
        self.application_args = [*(self.application_args or []), "--spec", spec]
        with tempfile.TemporaryDirectory(prefix="spark-curate-") as scratch:
            self.py_files = ",".join(p for p in (self.py_files, package_zip(scratch)) if p)
            if secret:
                if self.properties_file:
                    raise ValueError(
                        f"{self.task_id}: the iceberg connection has secret properties, which this operator "
                        "writes to its own --properties-file; remove properties_file or move its settings to conf"
                    )
                path = Path(scratch) / "catalog.properties"
                path.touch(mode=0o600)
                path.write_text("".join(f"{k} {_escape(v)}\n" for k, v in sorted(secret.items())))
                self.properties_file = str(path)
            self._hook = None  # built from the settings above
            try:
                super().execute(context)
            finally:
                if secret:
                    self.properties_file = None
        return self._record(context, spec)

    def _record(self, context: Context, encoded_spec: str) -> dict[str, Any]:
        """What this run committed, read back from the tables by its commit keys (on the branch):
        the task's XCom, in the shape of a Ray stage's (so a downstream stage reads this table at
        this snapshot), and the outlet event."""
        from ray_operators.contract.lineage import RUN_KEY, SPARK_APP_ID
        from ray_operators.contract.spec import StageSpec
        from ray_operators.curation import protocol
        from ray_operators.iceberg_catalog import build_catalog
        from ray_operators.iceberg_snapshots import committed_with, lineage_of

        spec = StageSpec.decode(encoded_spec)
        keys = protocol.CommitKeys(spec.run_key)
        catalog = build_catalog(self.iceberg_conn_id)

        def commit(table: str, key: str) -> tuple[dict[str, Any], Any]:
            metadata = catalog.load_table(table).metadata
            snap = committed_with(metadata, RUN_KEY, key)
            if snap is None:
                raise RuntimeError(f"spark-submit succeeded, but {table} holds no commit of run key {key}")
            rows = int(snap.summary.get("added-records") or 0)
            return {"table": table, "snapshot_id": snap.snapshot_id, "rows": rows}, lineage_of(metadata, snap)

        output, output_lineage = commit(self.output_table, keys.output)
        app_id = output_lineage.get(SPARK_APP_ID)
        quarantine, _ = commit(protocol.quarantine_table(self.output_table), keys.quarantine)
        processing = catalog.load_table(protocol.processing_table(self.output_table))
        folders = sorted(
            {
                r["folder"]
                for r in processing.scan(selected_fields=("folder", "status", "run_key"))
                .to_arrow()
                .to_pylist()
                if r["run_key"] == spec.run_key and r["status"] == protocol.SUCCESS
            }
        )
        result = protocol.result("spark", protocol.Claim(folders, [], [], False), output, quarantine)
        del result["skipped_folders"]  # not recorded in the tables
        asset = iceberg_asset(self.output_table, iceberg_conn_id=self.iceberg_conn_id)
        try:
            context["outlet_events"][asset].extra = {
                **output,
                "snapshot_ids": [output["snapshot_id"]],
                "spark_app_name": self.name,
            }
        except (KeyError, TypeError) as err:  # not declared as an outlet
            self.log.info("No outlet event for %s: %s", self.output_table, err)
        self.log.info("Spark curate committed: %s", result)
        self._recorded = {
            "run_key": spec.run_key,
            "spark_app_name": self.name,
            "spark_app_id": app_id,
            "result": result,
        }
        return self._recorded

    # ---- OpenLineage ---------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The raw roots this run curated from, the output and quarantine tables at the snapshots it
        committed, and the Spark application and run key as the run's ``rayLakehouse`` facet."""
        return self._curate_lineage(self._recorded)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """The raw roots and the output table (no version: nothing was committed)."""
        return self._curate_lineage(None)

    def _curate_lineage(self, recorded: dict[str, Any] | None) -> Any:
        from ray_operators.contract.spec import StageSpec
        from ray_operators.lineage.openlineage import (
            RayLakehouseRunFacet,
            iceberg_dataset,
            lineage,
            location_dataset,
            open_catalog,
        )

        spec = StageSpec.decode(self._encoded_spec) if self._encoded_spec else None
        result = (recorded or {}).get("result") or {}
        catalog = open_catalog(self.iceberg_conn_id, self._lineage_catalog)
        # The raw roots (the claimed units are folder names under them).
        raw = (
            spec.raw_paths
            if spec
            else ([self.raw_paths] if isinstance(self.raw_paths, str) else self.raw_paths)
        )
        written = [result[k] for k in ("output", "quarantine") if isinstance(result.get(k), dict)]
        outputs = [
            iceberg_dataset(
                catalog, w["table"], w.get("snapshot_id"), output=True, catalog_name=self.iceberg_conn_id
            )
            for w in written or [{"table": self.output_table}]
        ]
        facet = RayLakehouseRunFacet(
            stage="curate",
            engine="spark",
            status="SUCCEEDED" if recorded is not None else "FAILED",
            runKey=spec.run_key if spec is not None else None,
            sparkAppId=(recorded or {}).get("spark_app_id"),
        )
        return lineage([location_dataset(str(p)) for p in raw], outputs, facet)


def _sqlite_catalog(properties: dict[str, str]) -> bool:
    return str(properties.get("uri", "")).startswith(("sqlite:", "jdbc:sqlite:"))


def _escape(value: str) -> str:
    """A Java properties value: backslashes and line breaks escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
