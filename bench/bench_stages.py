"""Stage data paths: incremental reads, training ingest, and a 1M-row preprocess stage.

(1) Incremental read after a 1% append to a 5M-row table: bytes and seconds of reading only the
    appended data files (``appended_files`` + ``read_parquet``, what ``read_pinned`` does for a
    snapshot range) against Ray's full ``read_iceberg`` of the table. Goal: at most 2% of the bytes.
(2) Training ingest rows/s through ``iter_torch_batches`` over a pinned ``read_iceberg`` against a
    raw pyarrow read of the same data files converted to torch tensors batch by batch: plain
    ``iter_torch_batches`` at the training batch size, and what the train stage does (the pinned
    read cached once, then ``ray_operators.jobs.train_batches.iter_minibatches`` each epoch) over 5
    epochs. Goal: at least 0.8 of the raw rate.
(3) is bench/bench_preprocess_stage.py (a 1M-row preprocess stage through the operator against the
    same job submitted directly).

usage: python bench/bench_stages.py [--rows 5000000] [--train-rows 5000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.airflow_home import isolated_airflow_home  # noqa: E402

HOME = isolated_airflow_home("bench-stages-airflow-")

from bench.results import write_section  # noqa: E402
from tests.helpers.iceberg_helpers import catalog_properties, connection_env, open_catalog  # noqa: E402

CONN = "iceberg_bench"


def _sizes(table, files: list[str] | None = None) -> int:
    total = 0
    for task in table.scan().plan_files():
        if files is None or task.file.file_path in files:
            total += task.file.file_size_in_bytes
    return total


def _ones(batch):
    import pyarrow as pa

    return pa.table({"one": pa.array([1] * batch.num_rows, type=pa.int64())})


def incremental(root: Path, rows: int) -> dict[str, float]:
    import numpy as np
    import pyarrow as pa
    import ray

    from ray_operators.jobs.read import appended_files

    catalog = open_catalog(root, CONN)
    catalog.create_namespace_if_not_exists("bench")
    schema = pa.schema([("id", pa.int64()), ("v", pa.float64()), ("k", pa.int32())])
    table = catalog.create_table("bench.big", schema=schema)
    chunk = rows // 10
    for i in range(10):
        ids = np.arange(i * chunk, (i + 1) * chunk, dtype="int64")
        table.append(pa.table({"id": ids, "v": ids * 0.5, "k": (ids % 97).astype("int32")}, schema=schema))
    before = table.metadata.current_snapshot_id
    extra = rows // 100
    ids = np.arange(rows, rows + extra, dtype="int64")
    table.append(pa.table({"id": ids, "v": ids * 0.5, "k": (ids % 97).astype("int32")}, schema=schema))
    after = table.metadata.current_snapshot_id

    def full_read() -> int:
        # Sum a column so the data is really read (count() can answer from metadata).
        ds = ray.data.read_iceberg(
            table_identifier="bench.big",
            catalog_kwargs={"name": CONN, **catalog_properties(root)},
            snapshot_id=after,
        )
        return ds.map_batches(_ones, batch_format="pyarrow").sum("one")

    def incremental_read() -> int:
        files = appended_files(catalog.load_table("bench.big"), before, after)
        return ray.data.read_parquet(files).map_batches(_ones, batch_format="pyarrow").sum("one")

    full_read(), incremental_read()  # warm-up: first use of each read path in this process
    full_times, inc_times = [], []
    for _ in range(3):
        started = time.perf_counter()
        full = full_read()
        full_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        inc = incremental_read()
        inc_times.append(time.perf_counter() - started)
    full_s, inc_s = min(full_times), min(inc_times)
    full_bytes = _sizes(table)
    inc_bytes = _sizes(table, appended_files(table, before, after))
    assert full == rows + extra and inc == extra, (full, inc)
    return {
        "full_rows": full,
        "full_bytes": full_bytes,
        "full_s": full_s,
        "inc_rows": inc,
        "inc_bytes": inc_bytes,
        "inc_s": inc_s,
    }


EPOCHS = 5
REPS = 5


def ingest(root: Path, rows: int, files_count: int = 8) -> tuple[dict[int, dict[str, float]], dict]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import torch

    from ray_operators.contract.spec import StageSpec, TableInput
    from ray_operators.jobs.read import read_pinned
    from ray_operators.jobs.train_batches import ingest_read_blocks, iter_minibatches

    catalog = open_catalog(root, CONN)
    cols = [f"f{i}" for i in range(8)]
    schema = pa.schema([(c, pa.float32()) for c in cols] + [("label", pa.int64())])
    table = catalog.create_table("bench.features", schema=schema)
    rng = np.random.default_rng(0)
    for part in np.array_split(np.arange(rows), files_count):  # a table written in several commits
        data = {c: rng.normal(size=len(part)).astype("float32") for c in cols}
        data["label"] = rng.integers(0, 2, size=len(part))
        table.append(pa.table(data, schema=schema))
    table = catalog.load_table("bench.features")
    snapshot = table.metadata.current_snapshot_id
    files = [t.file.file_path for t in table.scan().plan_files()]

    def raw(batch_size: int) -> float:
        """One epoch: the data files read in this process, one tensor per column per batch."""
        started = time.perf_counter()
        n = 0
        for path in files:
            for batch in pq.ParquetFile(path.removeprefix("file://")).iter_batches(batch_size=batch_size):
                tensors = {
                    name: torch.as_tensor(batch.column(name).to_numpy()) for name in batch.schema.names
                }
                n += len(tensors["label"])
        assert n == rows
        return rows / (time.perf_counter() - started)

    def pinned():
        return ray.data.read_iceberg(
            table_identifier="bench.features",
            catalog_kwargs={"name": CONN, **catalog_properties(root)},
            snapshot_id=snapshot,
        )

    def plain(batch_size: int) -> float:
        """One epoch: plain ``iter_torch_batches`` at the training batch size over the pinned read."""
        started = time.perf_counter()
        n = 0
        for batch in pinned().iter_torch_batches(batch_size=batch_size, prefetch_batches=2):
            n += len(batch["label"])
        assert n == rows
        return rows / (time.perf_counter() - started)

    spec = StageSpec(
        stage="train",
        catalog_name=CONN,
        catalog_properties=catalog_properties(root),
        output_table="bench.models",
        inputs=[TableInput(table="bench.features", snapshot_id=snapshot, columns=[*cols, "label"])],
    )

    cached_reads: dict[str, list[tuple[float, int]]] = {"auto": [], "ray": []}

    def stage(batch_size: int, read_blocks: str = "auto") -> tuple[float, float, float]:
        """What the train stage does: the pinned read (``read_pinned``, split into
        ``ingest_read_blocks`` blocks) materialized once (``train_test_split`` materializes it),
        then ``iter_minibatches`` each epoch. Rates: epoch 1 (read included), later epochs, and all
        EPOCHS together."""
        started = time.perf_counter()
        blocks = ingest_read_blocks(read_blocks, num_workers=1)
        ds, _ = read_pinned(spec, spec.inputs[0], num_blocks=blocks)
        ds = ds.select_columns([*cols, "label"]).materialize()
        cached_reads[read_blocks].append((time.perf_counter() - started, ds.num_blocks()))
        times = []
        for epoch in range(EPOCHS):
            n = 0
            for _x, y in iter_minibatches(
                ds, features=cols, label="label", batch_size=batch_size, shuffle=True, seed=epoch
            ):
                n += len(y)
            assert n == rows
            times.append(time.perf_counter() - started)
            started = time.perf_counter()
        later = sum(times[1:]) / (EPOCHS - 1)
        return rows / times[0], rows / later, rows * EPOCHS / sum(times)

    raw(1024), plain(1024), stage(1024)  # warm-up: file cache, Ray workers
    out = {}
    for size in (256, 1024, 8192):
        raws = [raw(size) for _ in range(REPS)]
        plain_rate = max(plain(size) for _ in range(REPS))
        stages = [stage(size) for _ in range(REPS)]
        first, later, overall = (max(v) for v in zip(*stages, strict=True))
        ray_default = max(stage(size, read_blocks="ray")[2] for _ in range(REPS))
        out[size] = {
            "raw": max(raws),
            "plain": plain_rate,
            "first": first,
            "later": later,
            "overall": overall,
            "ray_default": ray_default,
            # Robustness check: medians of both sides instead of bests.
            "median_ratio": statistics.median(r[2] for r in stages) / statistics.median(raws),
        }
    cache = {
        setting: {"seconds": statistics.median(s for s, _ in runs), "blocks": runs[-1][1]}
        for setting, runs in cached_reads.items()
    }
    return out, cache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--train-rows", type=int, default=5_000_000)
    args = parser.parse_args()

    import ray

    from ray_operators.jobs.train_batches import ingest_rows

    root = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    os.environ.update(connection_env(CONN, root))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        inc = incremental(root, args.rows)
        print(inc, flush=True)
        ing, cache = ingest(root, args.train_rows)
        print(ing, cache, flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(HOME, ignore_errors=True)

    mb = 1024 * 1024
    share = inc["inc_bytes"] / inc["full_bytes"]
    lines = [
        f"`python bench/bench_stages.py --rows {args.rows} --train-rows {args.train_rows}`, "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Ray Data in process, SqlCatalog + file:// warehouse.",
        "",
        f"(1) Incremental read after a 1% append to a {args.rows:,}-row table:",
        "",
        "| read | rows | bytes read (MiB) | seconds |",
        "|---|---|---|---|",
        f"| full `read_iceberg` | {inc['full_rows']:,} | {inc['full_bytes'] / mb:.1f} | {inc['full_s']:.2f} |",
        f"| appended files only (`read_pinned` range) | {inc['inc_rows']:,} | {inc['inc_bytes'] / mb:.2f} | "
        f"{inc['inc_s']:.2f} |",
        "",
        f"Bytes: {share:.2%} of the full read (goal at most 2%: {'met' if share <= 0.02 else 'not met'}).",
        "",
        f"(2) Training ingest, {args.train_rows:,} rows x 8 float32 features, best of {REPS}:",
        "",
        "| training batch size | raw pyarrow -> torch | plain `iter_torch_batches` | train stage, epoch 1 "
        f"(read + cache) | train stage, epochs 2-{EPOCHS} | train stage, {EPOCHS} epochs | "
        f"same, Ray's default read blocks | {EPOCHS} epochs, ratio of medians |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, r in ing.items():
        cells = [f"{r['raw']:,.0f}"] + [
            f"{r[k]:,.0f} ({r[k] / r['raw']:.2f})"
            for k in ("plain", "first", "later", "overall", "ray_default")
        ]
        cells.append(f"{r['median_ratio']:.2f}")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    met = {size: r["overall"] / r["raw"] >= 0.8 for size, r in ing.items()}
    lines += [
        "",
        f"Rows/s, best of {REPS}, ratio to the raw read in brackets; the last column divides the median "
        "5-epoch rate by the median raw rate. The table has 8 data files (8 commits). The raw path "
        "reads them in this process and makes one tensor per column per batch, every epoch. Plain "
        "`iter_torch_batches` at the training batch size pays about a millisecond per batch (fetch, "
        "format, collate) and stays near 0.2 of the raw rate at every size. The train stage "
        "(`ray_operators/jobs/train_batches.py`) reads the pinned snapshot's training columns once into Ray's "
        "object store in one block per cluster CPU (`ingest_read_blocks`; `train_test_split` "
        "materializes the read), then each epoch pulls ingest batches of about 16 MiB "
        f"({ingest_rows(8, 8192):,} rows at batch 8192, `ingest_rows`) through "
        "`iter_torch_batches`, stacks the features, shuffles within the ingest batch and cuts "
        "minibatches as tensor views.",
        "",
        f"The cached read (read + materialize, median of all runs): {cache['auto']['seconds']:.2f} s in "
        f"{cache['auto']['blocks']} blocks (one per CPU), against {cache['ray']['seconds']:.2f} s in "
        f"{cache['ray']['blocks']} blocks with Ray Data's default read parallelism (a floor of 200 "
        "blocks), which the 'Ray's default read blocks' column uses.",
        "",
        f"Goal (at least 0.8 of the raw rate, over a {EPOCHS}-epoch run): "
        + ", ".join(f"batch {size}: {'met' if ok else 'not met'}" for size, ok in met.items())
        + ". The first epoch, which includes the Iceberg read through Ray's read tasks and object "
        "store, is the slowest part: on 2 cores Ray's executor, its read tasks and the training loop "
        "share the two cores that the raw read has to itself. Later epochs read the cached blocks "
        "and beat the raw read, which decodes Parquet every epoch.",
    ]
    write_section("Lakehouse stage data paths (issue 4)", "\n".join(lines))


if __name__ == "__main__":
    main()
