"""Stage 3, training ingest: Ray Train's TorchTrainer fed by Ray Data from a pinned feature snapshot.

Stage params: ``feature_columns``, ``label_column``, ``num_classes``, ``model_name``,
``num_workers`` (default 1), ``use_gpu`` (``"auto"``: when the cluster has GPUs; true/false),
``resources_per_worker``, ``epochs``, ``batch_size``, ``ingest_batch_size`` (rows per Ray Data
batch, cut into ``batch_size`` minibatches; default about 16 MiB of data; see ``train_batches.py``),
``read_blocks`` (blocks the cached read is split into: ``"auto"``, one per cluster CPU; ``"ray"``,
Ray Data's default; or a number), ``shuffle`` (default true), ``seed``, ``lr``, ``hidden``,
``holdout`` (fraction held out for evaluation, default 0.2),
``artifact_root`` (default: ``<root>/models``), ``storage_path`` (Ray Train's run storage;
default ``<root>/ray_train``, shared by every node), where ``<root>`` is the connection's
``lakehouse.storage-root`` or the catalog's warehouse when that is a location (see
``jobs/storage.py``). Both are opened with the catalog's file IO (its S3 endpoint and region).
Defaults: ``contract/params.py``.

Writes the model artifact (a torch state dict) to ``<artifact_root>/<model_name>/runs/<run key>/``
(file:// here, s3:// in production): keyed by the run key, never by a version chosen before
training. The version is assigned at the registry commit, from the registry as of the commit's
base, under the same optimistic-concurrency rule as every write: two concurrent training runs
get two versions, two artifacts and one registry row each. The registry row (the stage's output
table) holds model name and version, metrics (returned by the training function through Ray
Train's ``Result.return_value``), artifact URI, input table and snapshot id, and the run key.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from ray_operators.contract.lineage import MODEL, MODEL_URI, PREPROCESS_STATE_URI
from ray_operators.contract.spec import StageError, StageSpec
from ray_operators.jobs import storage
from ray_operators.jobs.timing import phase
from ray_operators.jobs.train_batches import ingest_read_blocks
from ray_operators.jobs.write import commit_rows_exactly_once, ensure_table, find_committed


def registry_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("model_name", pa.string()),
            ("model_version", pa.int64()),
            ("artifact_uri", pa.string()),
            ("metrics", pa.string()),
            ("input_table", pa.string()),
            ("input_snapshot_id", pa.int64()),
            ("feature_columns", pa.string()),
            ("label_column", pa.string()),
            ("num_classes", pa.int64()),
            ("hidden", pa.int64()),
            ("used_gpu", pa.bool_()),
            ("run_key", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            # The fitted preprocessing state of the features it was trained on (inference on raw
            # rows applies the same state, by this URI and version).
            ("preprocess_state_uri", pa.string()),
        ]
    )


def _ensure_registry(spec: StageSpec) -> Any:
    """The registry table, evolved to the current registry schema (columns added, never dropped)."""
    registry = ensure_table(spec, spec.output_table, registry_schema())
    missing = [f for f in registry_schema() if f.name not in registry.schema().column_names]
    if missing:
        from pyiceberg.types import StringType

        with registry.update_schema() as update:
            for field in missing:
                update.add_column(field.name, StringType())
        registry = spec.load_catalog().load_table(spec.output_table)
    return registry


def build_model(num_features: int, hidden: int, num_classes: int):
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(num_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes)
    )


def resolve_use_gpu(setting: Any) -> bool:
    """``auto``: use GPUs when the cluster has any; never fail on a CPU-only cluster by default."""
    import ray

    if isinstance(setting, str) and setting.lower() == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(setting)


def _train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    import time

    import ray.train
    import torch

    from ray_operators.jobs.train_batches import iter_minibatches

    # The same seed, the same initial weights: a run is reproducible on any cluster shape.
    torch.manual_seed(config["seed"])
    model = ray.train.torch.prepare_model(
        build_model(len(config["features"]), config["hidden"], config["classes"])
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    if config.get("local_shards"):
        from ray_operators.jobs.execution import LocalDataset

        rank = ray.train.get_context().get_world_rank()
        table = ray.get(config["local_shards"][rank])
        shard: Any = LocalDataset(lambda: [table])
    else:
        shard = ray.train.get_dataset_shard("train")
    losses: list[float] = []
    reported = float("-inf")
    for epoch in range(config["epochs"]):
        total, count = 0.0, 0
        for x, y in iter_minibatches(
            shard,
            features=config["features"],
            label=config["label"],
            batch_size=config["batch_size"],
            ingest_batch_size=config["ingest_batch_size"],
            shuffle=config["shuffle"],
            seed=config["seed"] + epoch,
        ):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + float(loss) * len(y), count + len(y)
        losses.append(total / max(count, 1))
        # Ray Train's report waits until the controller has taken the previous one (it polls
        # every health_check_interval_s): epochs quicker than that report only as often, and the
        # last epoch always. Every epoch's loss comes back in the return value.
        if epoch == config["epochs"] - 1 or time.monotonic() - reported >= config["report_every_s"]:
            ray.train.report({"epoch": epoch, "loss": losses[-1]})
            reported = time.monotonic()
    if ray.train.get_context().get_world_rank() != 0:
        return None
    base: Any = model.module if hasattr(model, "module") else model  # unwrapped from DDP
    _save_state(base.state_dict(), config["artifact_uri"], config["storage"])
    # Ray Train hands rank 0's return value back as Result.return_value: the metrics travel there.
    return {"epoch_losses": losses}


def artifact_dir(root: str, model_name: str, run_key: str) -> str:
    """Where one training run's artifacts go: keyed by its run key, so two runs (a backfill and a
    scheduled run, or ``max_active_runs > 1``) never write the same path, and a retry of the same
    run overwrites only its own unregistered artifact. The version is assigned at registration."""
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", run_key).strip("_")[:80]
    digest = hashlib.sha256(run_key.encode()).hexdigest()[:12]
    return f"{root.rstrip('/')}/{model_name}/runs/{slug}-{digest}"


def _save_state(state: dict[str, Any], uri: str, properties: dict[str, str] | None = None) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    storage.write_bytes(uri, buffer.getvalue(), properties)


def load_state(uri: str, properties: dict[str, str] | None = None) -> dict[str, Any]:
    """A saved model's state dict; ``properties``: the catalog's, for ``s3://`` artifacts."""
    import io

    import torch

    data = storage.read_bytes(uri, properties)
    if data is None:
        raise StageError(f"the model artifact {uri} does not exist")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _registered(spec: StageSpec, result: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": "train",
        "output": result,
        "model_name": row["model_name"],
        "model_version": int(row["model_version"]),
        "metrics": json.loads(row["metrics"]),
        "artifact_uri": row["artifact_uri"],
    }


#: Ray Train's environment variable for its controller's poll interval (propagated by Ray Train
#: from the driver to the controller and the workers).
HEALTH_CHECK_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


def _already_registered(spec: StageSpec, registry: Any) -> dict[str, Any] | None:
    """The registration of this run key, when a run with it already committed one."""
    done = find_committed(registry, spec.run_key)
    if done is None:
        return None
    rows = [
        r
        for r in registry.scan(snapshot_id=done.snapshot_id).to_arrow().to_pylist()
        if r["run_key"] == spec.run_key
    ]
    return _registered(
        spec,
        {"table": spec.output_table, "snapshot_id": done.snapshot_id, "rows": 1, "skipped": True},
        rows[0],
    )


def _read_training_data(
    spec: StageSpec, p: Any, features: list[str], label: str
) -> tuple[Any, Any, dict[str, Any]]:
    """The pinned feature snapshot, read once and cached: ``(item, dataset, read figures)``."""
    import ray.data

    from ray_operators.jobs.read import read_pinned

    item = spec.inputs[0]
    try:
        read_blocks = ingest_read_blocks(p.read_blocks, num_workers=p.num_workers)
    except ValueError as err:
        raise StageError(f"train stage params: {err}") from None
    if not item.columns:  # decode only what training uses (column pushdown into the scan)
        item = replace(item, columns=[*features, label])
    # Rows in table order, whichever read task finishes first: the seeded holdout split and the
    # training order then depend on the data alone, not on the cluster's timing or shape.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    with phase("plan read"):
        ds, _ = read_pinned(spec, item, num_blocks=read_blocks, local_max_bytes=p.local_max_bytes)
    # Cached once in the object store; every epoch (and the holdout split) reads these blocks.
    with phase("execute: read (cached)"):
        ds = ds.select_columns([*features, label]).materialize()
    cached = {"rows": ds.count(), "blocks": ds.num_blocks(), "requested_blocks": read_blocks}
    print(f"training read of {item.table}@{item.snapshot_id}: {cached}", flush=True)
    return item, ds, cached


def _fit(
    spec: StageSpec, p: Any, features: list[str], label: str, name: str, train_ds: Any, use_gpu: bool
) -> tuple[str, dict[str, float]]:
    """Train with Ray Train's TorchTrainer: ``(artifact uri, metrics)``."""
    import os

    import ray.train
    from ray.train.torch import TorchTrainer

    from ray_operators.jobs.execution import LocalDataset

    # A snapshot read in the driver reaches each training worker as its equal shard, put in the
    # object store once (as streaming_split(equal=True) would cut it): no Ray Data execution and
    # none of its coordinating actors, whose start-up is most of a small training run.
    local_shards = train_ds.equal_shards(int(p.num_workers)) if isinstance(train_ds, LocalDataset) else None
    # Never inside a table's folder (no table argument): orphan-file cleanup would delete models.
    root = "" if p.artifact_root and p.storage_path else storage.storage_root(spec)
    run_dir = artifact_dir(p.artifact_root or root + "/models", name, spec.run_key)
    artifact_uri = f"{run_dir}/model.pt"
    config = {
        "features": features,
        "label": label,
        "classes": int(p.num_classes),
        "hidden": int(p.hidden),
        "epochs": int(p.epochs),
        "batch_size": int(p.batch_size),
        "ingest_batch_size": int(p.ingest_batch_size) if p.ingest_batch_size else None,
        "shuffle": bool(p.shuffle),
        "seed": int(p.seed),
        "lr": float(p.lr),
        "artifact_uri": artifact_uri,
        "storage": spec.storage_properties(),  # no secrets: the nodes bring their own keys
        "local_shards": local_shards,
        "report_every_s": float(p.health_check_interval_s),
    }
    # Shared storage (next to the tables), not a node-local temporary folder: on a multi-node
    # cluster every worker and the driver must see the same run directory. The filesystem is the
    # catalog's (its s3 endpoint and region; keys from the node's environment).
    train_storage = p.storage_path or root + "/ray_train"
    train_fs, train_path = storage.filesystem(train_storage, spec.storage_properties())
    trainer = TorchTrainer(
        _train_loop,  # type: ignore[arg-type]  # rank 0's return value comes back with the result
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=int(p.num_workers),
            use_gpu=use_gpu,
            resources_per_worker=p.resources_per_worker or None,
        ),
        datasets=None if local_shards else {"train": train_ds},
        run_config=ray.train.RunConfig(
            name=run_dir.rsplit("/", 1)[1], storage_path=train_path, storage_filesystem=train_fs
        ),
    )
    os.environ[HEALTH_CHECK_INTERVAL_ENV] = str(float(p.health_check_interval_s))
    with phase("train (Ray Train fit)"):
        fit = trainer.fit()
    # Rank 0's return value (Ray 2.60's Result carries it; its stubs do not name it yet).
    returned = getattr(fit, "return_value", None)
    losses = (returned or {}).get("epoch_losses") or []
    if not losses:
        raise StageError(f"training returned no epoch losses (Ray Train result: {returned!r})")
    metrics = {k: float(v) for k, v in (fit.metrics or {}).items() if isinstance(v, int | float)}
    metrics.update(
        {"loss": float(losses[-1]), "first_epoch_loss": float(losses[0]), "epochs": float(len(losses))}
    )
    return artifact_uri, metrics


def _holdout_metrics(
    spec: StageSpec, p: Any, features: list[str], label: str, artifact_uri: str, test_ds: Any
) -> dict[str, float]:
    """Held-out evaluation with the saved artifact: what inference will load."""
    import numpy as np

    with phase("holdout: load model + read"):
        model = build_model(len(features), int(p.hidden), int(p.num_classes))
        model.load_state_dict(load_state(artifact_uri, spec.storage_properties()))
        model.eval()
        held = test_ds.to_pandas()
    import torch

    metrics: dict[str, float] = {}
    with torch.no_grad():
        logits = model(torch.tensor(held[features].to_numpy(dtype=np.float32)))
    predicted = logits.argmax(dim=1).numpy()
    metrics["holdout_accuracy"] = float((predicted == held[label].to_numpy()).mean()) if len(held) else 0.0
    if len(held):
        target = torch.tensor(held[label].to_numpy(dtype=np.int64))
        metrics["holdout_loss"] = float(torch.nn.functional.cross_entropy(logits, target))
    metrics["holdout_rows"] = float(len(held))
    return metrics


def run(spec: StageSpec) -> dict[str, Any]:
    # No early warm-up of task workers here: Ray Train's actors never reuse them, and a small
    # feature snapshot is read in the driver (read_pinned starts workers for a big one).
    with phase("import torch + Ray Train"):
        for module in ("numpy", "ray.data", "ray.train", "ray.train.torch"):
            importlib.import_module(module)

    if len(spec.inputs) != 1 or spec.inputs[0].snapshot_id is None:
        raise StageError("train reads exactly one feature table pinned to a snapshot_id")
    p = spec.typed_params()
    features, label = list(p.feature_columns), p.label_column
    if not features or not label:
        raise StageError("train needs params.feature_columns and params.label_column")
    name = p.model_name or spec.output_table.rpartition(".")[2]
    with phase("catalog load"):
        registry = _ensure_registry(spec)
    if (registered := _already_registered(spec, registry)) is not None:
        return registered

    item, ds, cached = _read_training_data(spec, p, features, label)
    train_ds, test_ds = ds.train_test_split(test_size=float(p.holdout), seed=int(p.seed))
    use_gpu = resolve_use_gpu(p.use_gpu)
    artifact_uri, metrics = _fit(spec, p, features, label, name, train_ds, use_gpu)
    metrics.update(_holdout_metrics(spec, p, features, label, artifact_uri, test_ds))

    row = {
        "model_name": name,
        "artifact_uri": artifact_uri,
        "metrics": json.dumps(metrics, sort_keys=True),
        "input_table": item.table,
        "input_snapshot_id": item.snapshot_id,
        "feature_columns": json.dumps(features),
        "label_column": label,
        "num_classes": int(p.num_classes),
        "hidden": int(p.hidden),
        "used_gpu": use_gpu,
        "run_key": spec.run_key,
        "created_at": datetime.now(UTC),
        "preprocess_state_uri": _feature_state(spec, item),
    }
    with phase("registry commit"):
        result, rows = commit_rows_exactly_once(spec, partial(_next_version_row, row=row))
    registered = _registered(spec, result, rows[0])
    print(f"model {name} v{registered['model_version']}: {metrics} (gpu={use_gpu})", flush=True)
    return {**registered, "used_gpu": use_gpu, "training_read": cached}


def _feature_state(spec: StageSpec, item: Any) -> str | None:
    """The fitted preprocessing state the pinned feature snapshot holds: the one its newest
    ancestor written by a preprocess stage applied (None for features no preprocess stage wrote)."""
    from ray_operators.iceberg_snapshots import iter_ancestors, summary_value

    metadata = spec.load_catalog().load_table(item.table).metadata
    for snap in iter_ancestors(metadata, metadata.snapshot_by_id(item.snapshot_id)):
        if (uri := summary_value(snap, PREPROCESS_STATE_URI)) is not None:
            return uri
    return None


def _next_version_row(registry: Any, *, row: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """The registry row, numbered on the commit's base: one more than the newest version there."""
    import pyarrow as pa
    import pyarrow.compute as pc

    existing = registry.scan(selected_fields=("model_name", "model_version")).to_arrow()
    mine = existing.filter(pc.equal(existing["model_name"], row["model_name"]))
    version = int(pc.max(mine["model_version"]).as_py() or 0) + 1 if mine.num_rows else 1
    numbered = {**row, "model_version": version}
    props = {MODEL: f"{row['model_name']}:{version}", MODEL_URI: row["artifact_uri"]}
    return pa.Table.from_pylist([numbered], schema=registry_schema()), props
