"""The stage spec: the JSON a stage operator sends to a stage job (base64 in its entrypoint)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray_operators.contract.lineage import (
    DAG_ID,
    INPUT_PREFIX,
    RUN_ID,
    RUN_KEY,
    STAGE,
    SUBMISSION_ID,
    TASK_ID,
)
from ray_operators.contract.result import SUBMISSION_ID_ENV

#: Catalog property (in the ``iceberg`` connection's extra) naming where stages keep files beside
#: their tables: fitted states, models, Ray Train runs (see ``jobs/storage.py``).
STORAGE_ROOT = "lakehouse.storage-root"
#: Set by :meth:`StageSpec.storage_properties`: the catalog whose secrets a node's environment
#: supplies (``PYICEBERG_CATALOG__<NAME>__*``) when it opens a file beside the tables.
CATALOG_NAME = "lakehouse.catalog-name"

#: Catalogs loaded by :meth:`StageSpec.load_catalog` in this process, by name and properties.
_CATALOGS: dict[tuple[str, str], Any] = {}

#: Catalog property names that look like secrets never travel in a spec (the dashboard shows it).
SECRET_MARKERS = (
    "secret",
    "password",
    "token",
    "credential",
    "session",
    "access-key",
    "account-key",
    "private",
    "connection-string",
    "header.",
    "sas",
)


def secret_problem(name: str, value: str) -> str | None:
    """Why a catalog property must not travel in a spec, or None when it may."""
    if any(marker in name.lower() for marker in SECRET_MARKERS):
        return f"catalog property {name!r} looks like a secret"
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(value))
    except ValueError:
        return None
    if parts.password:
        return f"catalog property {name!r} is a URI with a password in it"
    return None


def catalog_env_properties(name: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Catalog properties a Ray node's environment supplies for catalog ``name``:
    ``PYICEBERG_CATALOG__<NAME>__<KEY>`` (``ICEBERG_DEFAULT`` for the ``iceberg_default``
    connection; in ``KEY``, ``__`` stands for ``.`` and ``_`` for ``-``: ``CREDENTIAL``,
    ``S3__ACCESS_KEY_ID``).

    pyiceberg reads the same variables, but turns the ``_`` of the catalog *name* into ``-`` too,
    so a connection id like ``iceberg_default`` never matches; this lookup takes the name as it is.
    """
    prefix = f"PYICEBERG_CATALOG__{name.upper()}__"
    env = os.environ if environ is None else environ
    return {
        key[len(prefix) :].lower().replace("__", ".").replace("_", "-"): value
        for key, value in env.items()
        if key.upper().startswith(prefix) and len(key) > len(prefix)
    }


class StageError(RuntimeError):
    """A stage cannot run as specified (bad spec, schema mismatch...): fails before any write."""


@dataclass
class TableInput:
    """An input table, pinned: one snapshot, the appends in ``(from, to]``, or the data each of a
    list of append snapshots added (``snapshot_ids``: a sensor's or an asset event's snapshots, or
    the ones a user asked to reprocess)."""

    table: str
    snapshot_id: int | None = None
    from_snapshot_id: int | None = None
    to_snapshot_id: int | None = None
    columns: list[str] | None = None
    row_filter: str | None = None
    snapshot_ids: list[int] | None = None

    @property
    def is_range(self) -> bool:
        return self.to_snapshot_id is not None

    @property
    def is_list(self) -> bool:
        return self.snapshot_ids is not None

    def lineage(self) -> str:
        if self.is_list:
            return "+".join(str(s) for s in self.snapshot_ids or [])
        if self.is_range:
            return f"{self.from_snapshot_id}..{self.to_snapshot_id}"
        return str(self.snapshot_id)

    def identity(self) -> list[int]:
        """The snapshot ids this input pins (for run keys)."""
        if self.is_list:
            return list(self.snapshot_ids or [])
        return [s for s in (self.to_snapshot_id or self.snapshot_id,) if s is not None]


@dataclass
class StageSpec:
    """What a stage job needs: catalog, pinned inputs, output, identity, parameters."""

    stage: str
    catalog_name: str
    catalog_properties: dict[str, str]
    output_table: str
    mode: str = "append"
    inputs: list[TableInput] = field(default_factory=list)
    raw_paths: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    slice_filter: dict[str, Any] | None = None
    run: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        key = self.run.get("run_key")
        if not key:
            raise StageError("stage spec has no run.run_key: exactly-once writes need one")
        return key

    def with_run_key(self, key: str) -> StageSpec:
        """The same spec under another run key (a run's auxiliary commits)."""
        return StageSpec.from_json({**self.to_json(), "run": {**self.run, "run_key": key}})

    def typed_params(self) -> Any:
        """``params`` parsed into the stage's typed parameters (:mod:`ray_operators.contract.params`)."""
        from ray_operators.contract.params import STAGE_PARAMS, ParamsError, parse

        if self.stage not in STAGE_PARAMS:
            return dict(self.params)
        try:
            return parse(self.stage, self.params)
        except (ParamsError, TypeError) as err:
            raise StageError(str(err)) from None

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "inputs"}
        data["inputs"] = [i.__dict__ for i in self.inputs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageSpec:
        data = dict(data)
        inputs = [TableInput(**i) for i in data.pop("inputs", [])]
        spec = cls(inputs=inputs, **data)
        if spec.mode not in ("append", "overwrite", "upsert"):
            raise StageError(f"output mode must be append, overwrite or upsert, got {spec.mode!r}")
        if spec.mode == "upsert" and not spec.keys:
            raise StageError("upsert needs keys")
        for name, value in spec.catalog_properties.items():
            if problem := secret_problem(name, value):
                raise StageError(
                    f"{problem}; secrets must come from the cluster's own environment, not the stage spec "
                    "(the Ray dashboard shows it)"
                )
        return spec

    def encode(self) -> str:
        """URL-safe base64 JSON, for a job entrypoint argument (key order kept: a declared schema
        lists its columns in order)."""
        return base64.urlsafe_b64encode(json.dumps(self.to_json()).encode()).decode()

    @classmethod
    def decode(cls, text: str) -> StageSpec:
        return cls.from_json(json.loads(base64.urlsafe_b64decode(text.encode())))

    def catalog_kwargs(self) -> dict[str, str]:
        """What Ray's Iceberg source and sink load the catalog with (on this node, and inside
        the cluster's tasks): the spec's properties plus the node's own secrets."""
        # Table identity in a SqlCatalog includes the catalog name: pass it explicitly, always.
        env = catalog_env_properties(self.catalog_name)
        return {"name": self.catalog_name, **env, **self.catalog_properties}

    def storage_properties(self) -> dict[str, str]:
        """What opens files beside the tables (``jobs/storage.py``): the catalog's properties and
        its name, so the node that opens a file adds its own secrets for that catalog there."""
        return {**self.catalog_properties, CATALOG_NAME: self.catalog_name}

    def load_catalog(self) -> Any:
        """The catalog, with the secrets the node's own environment supplies
        (:func:`catalog_env_properties`) under the spec's properties."""
        from pyiceberg.catalog import load_catalog

        props = {**catalog_env_properties(self.catalog_name), **self.catalog_properties}
        key = (self.catalog_name, json.dumps(props, sort_keys=True))
        # One catalog per process and properties: a stage loads tables several times, and each
        # load_catalog opens a new connection pool (SQL) or session (REST).
        if (catalog := _CATALOGS.get(key)) is None:
            catalog = _CATALOGS.setdefault(key, load_catalog(self.catalog_name, **props))
        return catalog

    def lineage_properties(self) -> dict[str, str]:
        props = {
            RUN_KEY: self.run_key,
            DAG_ID: self.run.get("dag_id", ""),
            RUN_ID: self.run.get("run_id", ""),
            TASK_ID: self.run.get("task_id", ""),
            SUBMISSION_ID: os.environ.get(SUBMISSION_ID_ENV, self.run.get("submission_id", "")),
            STAGE: self.stage,
        }
        for item in self.inputs:
            props[INPUT_PREFIX + item.table] = item.lineage()
        if self.raw_paths:
            props[INPUT_PREFIX + "raw"] = ",".join(self.raw_paths)[:1000]
        return props
