"""The production shape on one machine, without Docker: object storage with an Iceberg REST
catalog (SeaweedFS), and a Ray cluster of two nodes.

- **Storage and catalog:** :class:`~ray_operators.devstack.seaweedfs.LocalSeaweedFS`. Raw data
  lives in ``s3://raw``, the tables in the REST catalog's S3 Tables bucket ``s3://warehouse``, and
  what stages keep beside their tables (fitted states, models, Ray Train runs) in
  ``s3://lakehouse`` (the connection's ``lakehouse.storage-root``: a table bucket holds only the
  catalog's own files).
- **Ray:** a head with no CPUs for tasks (job drivers only, as KubeRay recommends) and a worker
  node with the CPUs and the custom resource :data:`WORKER_RESOURCE`: every Ray Data and Ray Train
  task runs there. Both nodes get the storage keys and the catalog credential from their own
  environment; the jobs never carry them, and the package reaches the cluster through the job's
  ``runtime_env`` (``py_modules``), not through this checkout.
- **Airflow** gets ``AIRFLOW_CONN_ICEBERG_DEFAULT`` (the catalog, with its secrets) and
  ``AIRFLOW_CONN_RAY_DEFAULT`` (the head, with its token) from :meth:`ProductionStack.airflow_env`.

Start it, use it, stop it (by pid): ``with ProductionStack(workdir) as stack: ...``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ray_operators.devstack.ray_cluster import LocalRayHead, LocalRayWorker
from ray_operators.devstack.seaweedfs import LocalSeaweedFS

#: The worker node's custom resource.
WORKER_RESOURCE = "lakehouse_worker"
RAW_BUCKET = "raw"
#: Environment variables that choose the stack's secrets instead of generating them: for tests that
#: check the secrets never leak (they must know what to look for).
SECRET_ENV = ("LAKEHOUSE_STACK_ACCESS_KEY", "LAKEHOUSE_STACK_SECRET_KEY", "LAKEHOUSE_STACK_RAY_TOKEN")
FILES_BUCKET = "lakehouse"


class ProductionStack:
    """SeaweedFS (S3 + Iceberg REST catalog) and a two-node Ray cluster on loopback.

    :param workdir: folder for every service's data, config and log.
    :param worker_cpus: CPUs of the worker node (all the cluster's task CPUs).
    :param catalog_conn_id: the ``iceberg`` connection id, which is also the catalog's name.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        worker_cpus: int = 2,
        catalog_conn_id: str = "iceberg_default",
        ray_conn_id: str = "ray_default",
        object_store_memory: int = 600_000_000,
    ) -> None:
        self.workdir = Path(workdir)
        self.worker_cpus = worker_cpus
        self.catalog_conn_id = catalog_conn_id
        self.ray_conn_id = ray_conn_id
        self.object_store_memory = object_store_memory
        access_key, secret_key, self._token = (os.environ.get(name) or None for name in SECRET_ENV)
        self.storage = LocalSeaweedFS(
            workdir=self.workdir / "seaweedfs",
            buckets=(RAW_BUCKET, FILES_BUCKET),
            table_bucket="warehouse",
            access_key=access_key,
            secret_key=secret_key,
        )
        self.head: LocalRayHead | None = None
        self.worker: LocalRayWorker | None = None

    @property
    def raw_root(self) -> str:
        return f"s3://{RAW_BUCKET}"

    @property
    def storage_root(self) -> str:
        return f"s3://{FILES_BUCKET}"

    def node_env(self) -> dict[str, str]:
        """What every Ray node has in its environment: the storage secrets, and the switch that
        makes stage results say which node they ran on."""
        from ray_operators.jobs.run_stage import REPORT_NODES_ENV

        return {**self.storage.node_env(self.catalog_conn_id), REPORT_NODES_ENV: "1"}

    def start(self) -> ProductionStack:
        try:
            self.storage.start()
            self.head = LocalRayHead(
                workdir=self.workdir / "ray-head",
                num_cpus=0,
                object_store_memory=self.object_store_memory,
                env=self.node_env(),
                token=self._token,
            ).start()
            self.worker = self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self) -> LocalRayWorker:
        """(Re)start the worker node: after :meth:`LocalRayWorker.kill`, a fresh node joins."""
        assert self.head is not None, "start the stack first"
        if self.worker is not None:
            self.worker.stop()  # a live one would be left running unseen; a killed one is cleaned up
        self.worker = LocalRayWorker(
            self.head,
            workdir=self.workdir / "ray-worker",
            num_cpus=self.worker_cpus,
            object_store_memory=self.object_store_memory,
            resources={WORKER_RESOURCE: 100},
            env=self.node_env(),
        ).start()
        return self.worker

    def catalog_properties(self) -> dict[str, str]:
        """The catalog's properties, secrets included (for this process's own reads)."""
        return {
            **self.storage.catalog_properties(),
            **self.storage.secret_properties(),
            "lakehouse.storage-root": self.storage_root,
        }

    def iceberg_connection(self) -> dict[str, Any]:
        conn = self.storage.iceberg_connection()
        conn["extra"]["lakehouse.storage-root"] = self.storage_root
        return conn

    def airflow_env(self) -> dict[str, str]:
        """Connections (``AIRFLOW_CONN_*``) and settings for Airflow on this stack."""
        assert self.head is not None, "start the stack first"
        return {
            f"AIRFLOW_CONN_{self.catalog_conn_id.upper()}": json.dumps(self.iceberg_connection()),
            **self.head.connection_env(self.ray_conn_id),
            # The shipped specs read raw data under this root.
            "LAKEHOUSE_RAW_ROOT": self.raw_root,
            # Stage jobs bring this package in their runtime_env: the nodes need no checkout.
            "RAY_LAKEHOUSE_SHIP_PACKAGE": "1",
            # The S3 key id is not masked by Airflow's defaults (the secret and password are).
            "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": "access-key-id,credential",
        }

    def secrets(self) -> list[str]:
        """Every secret string of the stack, for tests that check none leaks."""
        assert self.head is not None
        return [*self.storage.secrets(), self.head.token]

    def upload(self, local: str | os.PathLike[str], prefix: str) -> list[str]:
        """Copy a local folder's files to ``s3://raw/<prefix>/...``; returns the URIs written."""
        fs = self.storage.filesystem()
        root = Path(local)
        written = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = "/".join(p for p in (RAW_BUCKET, prefix.strip("/"), path.relative_to(root).as_posix()) if p)
            with fs.open_output_stream(key) as out:
                out.write(path.read_bytes())
            written.append(f"s3://{key}")
        return written

    def stop(self) -> None:
        """Stop everything started, by pid: the worker node, the head, then the storage."""
        for service in (self.worker, self.head, self.storage):
            if service is not None:
                service.stop()
        self.worker = self.head = None

    def __enter__(self) -> ProductionStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
