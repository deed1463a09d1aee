"""The training batcher: Ray Data -> torch minibatches at the rate of a raw pyarrow read.

``iter_torch_batches`` pays a fixed cost per batch (fetch, format, collate, device copy) of
roughly a millisecond. At a training batch size of a few hundred to a few thousand rows that
fixed cost, not the data, sets the rate: measured on 2 cores it reaches 0.2-0.3 of a raw pyarrow
read (``bench/bench_stages.py``). So the stage pulls *ingest batches* of ``ingest_batch_size``
rows through ``iter_torch_batches``, stacks the feature columns into one matrix per ingest batch,
moves it to the device once, and cuts it into training minibatches as tensor views (no copy).
By default an ingest batch holds about 16 MiB (:func:`ingest_rows`: 229,376 rows of 8 features
at batch size 8192, about 32,000 rows of 64 features): large enough that the fixed cost per
batch vanishes, small enough for any host or device. With ``shuffle`` the rows of each ingest
batch are permuted first (one gather), on top of Ray Data's ``local_shuffle_buffer_size`` when
that is set.

The read that feeds training is cached once in Ray's object store and reused by every epoch, so
its block count matters twice. Ray Data's default read parallelism has a floor of 200 blocks
(``DataContext.read_op_min_num_blocks``): a 200 MB feature snapshot in 8 data files becomes 200
blocks of 1 MB, and on 2 cores the read then spends most of its time scheduling blocks (0.95 s,
against 0.35 s in 2 blocks; ``bench/bench_stages.py``). :func:`ingest_read_blocks` asks for one
block per CPU of the cluster instead (at least one per training worker), so the read is one wave
of tasks; blocks larger than ``DataContext.target_max_block_size`` (128 MiB) are still split by
Ray Data as they are read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

#: Bytes an ingest batch aims at, counting 8 bytes per value (float64 sources; float32 take half).
DEFAULT_INGEST_BYTES = 16 * 1024 * 1024


def ingest_rows(num_features: int, batch_size: int, ingest_bytes: int = DEFAULT_INGEST_BYTES) -> int:
    """Rows per ingest batch: ``ingest_bytes`` of features and label, a whole number of
    minibatches, at least one."""
    rows = ingest_bytes // (8 * (max(int(num_features), 1) + 1))
    return max(rows - rows % batch_size, batch_size)


def ingest_read_blocks(
    setting: Any = "auto", *, num_workers: int = 1, cluster_cpus: float | None = None
) -> int | None:
    """Blocks to read a training snapshot into: ``"auto"`` is one per cluster CPU, at least
    ``num_workers``; ``"ray"`` (or None) keeps Ray Data's default; a positive int is taken as is."""
    if setting is None or setting == "ray":
        return None
    if setting == "auto":
        if cluster_cpus is None:
            import ray

            cluster_cpus = ray.cluster_resources().get("CPU", 1)
        return max(int(cluster_cpus or 1), int(num_workers), 1)
    try:
        blocks = int(setting)
    except (TypeError, ValueError):
        blocks = 0
    if isinstance(setting, bool) or blocks < 1:
        raise ValueError(f"read_blocks must be 'auto', 'ray' or a positive integer, got {setting!r}")
    return blocks


def iter_minibatches(
    iterator: Any,
    *,
    features: Sequence[str],
    label: str,
    batch_size: int,
    ingest_batch_size: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
    local_shuffle_buffer_size: int | None = None,
    prefetch_batches: int = 2,
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(x, y)``: ``x`` float32 of shape (n, len(features)), ``y`` int64 of shape (n,).

    ``iterator`` is a Ray ``DataIterator`` (``ray.train.get_dataset_shard``) or a ``Dataset``.
    Every input row appears in exactly one minibatch; minibatches have ``batch_size`` rows except
    the last of each ingest batch (dropped with ``drop_last``). ``ingest_batch_size`` None: about
    16 MiB per ingest batch (:func:`ingest_rows`).
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if ingest_batch_size is None:
        ingest_batch_size = ingest_rows(len(features), batch_size)
    ingest = max(int(ingest_batch_size or batch_size), batch_size)
    # Ingest batches are a whole number of minibatches, so only the final one can be short.
    ingest -= ingest % batch_size
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    columns = [*features, label]
    for big in iterator.iter_torch_batches(
        batch_size=ingest,
        prefetch_batches=prefetch_batches,
        local_shuffle_buffer_size=local_shuffle_buffer_size,
    ):
        missing = [c for c in columns if c not in big]
        if missing:
            raise KeyError(f"training batch lacks columns {missing}; it has {sorted(big)}")
        y = big[label].to(torch.int64)
        if len(y) == 0:  # an empty block yields an empty batch: no minibatch (its loss is NaN)
            continue
        x = torch.stack([big[c].to(torch.float32) for c in features], dim=1)
        if shuffle:
            order = torch.randperm(len(y), generator=generator).to(y.device)
            x, y = x.index_select(0, order), y.index_select(0, order)  # half the time of x[order]
        for xs, ys in zip(torch.split(x, batch_size), torch.split(y, batch_size), strict=True):
            if drop_last and len(ys) < batch_size:
                continue
            yield xs, ys
