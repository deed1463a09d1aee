"""Where a stage's Dataset work runs: in Ray tasks, or, for a small input, in the job's driver.

A Ray Data execution on a fresh job costs seconds before its first row: the job's worker
processes start (an interpreter each, Ray, pyarrow, pyiceberg) while the driver imports and
plans. On an input of a few thousand rows that is nearly all of a stage's time. So an input whose
data files (or raw files) total at most the stage's ``local_max_bytes`` (stage params; default
:data:`~ray_operators.contract.params.DEFAULT_LOCAL_MAX_BYTES`, ``0`` always distributes) runs in
the driver, when the driver's node offers CPUs to tasks (a head kept for drivers, with no task
CPUs, sends all data work to the workers), on the **same code path**:

- the read runs Ray's own read tasks (``Datasource.get_read_tasks``: Iceberg's scan planning,
  FileIO and field-id projection) in this process;
- :class:`LocalDataset` is the slice of Ray's ``Dataset`` API the stages use (``map_batches``
  with the same batch formats, batch sizes and callable classes, ``materialize``, ``count``,
  ``schema``, ``take_all``, ``write_datasink``), lazy like Ray's, built on Ray's own block
  conversions (``BlockAccessor``);
- ``write_datasink`` drives the very sink a distributed write uses (the run-key-guarded Iceberg
  sink): ``on_write_start`` with the first block's schema, ``write`` of the blocks, then
  ``on_write_complete`` (``on_write_failed`` on an error), as Ray's write operator does.

A stage that needs a GPU for a transform, or Ray Train, runs distributed whatever its size.
:func:`warm_workers` starts a distributed stage's worker processes early.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: How many worker processes a distributed stage starts at once, at most (see :func:`warm_workers`).
WARM_WORKERS = 2
_warmed: list[bool] = []


def runs_locally(size_bytes: int, limit: int | None) -> bool:
    """Whether work over ``size_bytes`` of input runs in the driver: at most ``limit`` (0/None:
    never), and only on a driver node that offers CPUs to tasks. A head node with no task CPUs
    (KubeRay's advice, and the production shape here) is for drivers and coordination: the data
    work goes to the worker nodes, whatever its size."""
    if not limit or int(size_bytes) > int(limit):
        return False
    if not _driver_node_has_cpus():
        print(
            f"{size_bytes:,} bytes of input, but this job's node offers no CPUs to tasks: in Ray's workers",
            flush=True,
        )
        return False
    return True


def _driver_node_has_cpus() -> bool:
    import ray

    try:
        here = ray.get_runtime_context().get_node_id()
        return any(
            node["NodeID"] == here and node.get("Resources", {}).get("CPU", 0) > 0 for node in ray.nodes()
        )
    except Exception:  # no cluster to ask: nothing to run tasks on either
        return False


def _warm() -> int:
    """Import in a worker what the stage's Ray Data tasks will need."""
    import pyarrow.parquet  # noqa: F401
    import pyiceberg.io.pyarrow  # noqa: F401
    import ray.data  # noqa: F401

    return os.getpid()


def warm_workers() -> None:
    """Start the job's worker processes now, while the driver imports and plans (once per job).

    Ray starts a job's workers on its first tasks: a cold worker costs about a second (interpreter,
    Ray, pyarrow, pyiceberg) before the first block is read. Fire-and-forget tasks (one per CPU,
    at most :data:`WARM_WORKERS`) start them beside the driver's own work; Ray then leases the
    first Ray Data tasks to these idle, warm workers. A stage that runs in the driver skips this:
    the workers would only take CPU from the driver.
    """
    if _warmed:
        return
    _warmed.append(True)
    import ray

    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        warm = ray.remote(num_cpus=1)(_warm)
        for _ in range(min(cpus, WARM_WORKERS)):
            warm.remote()
    except Exception as err:  # an optimisation only: never fail a stage for it
        print(f"could not warm workers: {type(err).__name__}: {err}", flush=True)


def read_in_driver(source: Any) -> LocalDataset:
    """A Ray ``Datasource`` read by its own read tasks, in this process."""
    from ray.data.context import DataContext

    tasks = source.get_read_tasks(1, data_context=DataContext.get_current())
    return LocalDataset(lambda: [block for task in tasks for block in task()])


def from_arrow(tables: Any, *, local: bool) -> Any:
    """Arrow tables as a dataset: a :class:`LocalDataset`, or Ray's ``from_arrow``."""
    tables = list(tables) if isinstance(tables, list | tuple) else [tables]
    if local:
        return LocalDataset(lambda: tables)
    import ray.data

    return ray.data.from_arrow(tables)


class LocalDataset:
    """A dataset computed in the driver: the part of Ray's ``Dataset`` API the stages use.

    Lazy like Ray's: nothing runs until a consuming call (``materialize``, ``count``,
    ``schema()``, ``take_all``, ``write_datasink``), and the result is computed once.

    :param compute: ``() -> blocks`` (pyarrow tables or pandas frames).
    """

    def __init__(self, compute: Callable[[], list[Any]]) -> None:
        self._compute = compute
        self._blocks: list[Any] | None = None

    # ---- transformations -------------------------------------------------------------------

    def map_batches(
        self,
        fn: Any,
        *,
        batch_size: int | str | None = None,
        batch_format: str | None = "default",
        fn_args: Iterable[Any] | None = None,
        fn_kwargs: dict[str, Any] | None = None,
        fn_constructor_args: Iterable[Any] | None = None,
        fn_constructor_kwargs: dict[str, Any] | None = None,
        zero_copy_batch: bool = True,
        **_resources: Any,
    ) -> LocalDataset:
        """Ray's ``map_batches`` semantics: ``fn`` (a function, or a callable class constructed
        once, as one actor would) on batches of ``batch_size`` rows (None or ``"auto"``: a whole
        block) in ``batch_format``; resource arguments (``num_cpus``, ``concurrency``,
        ``compute``...) have nothing to place here."""
        args, kwargs = list(fn_args or []), dict(fn_kwargs or {})

        def compute() -> list[Any]:
            call = (
                fn(*(fn_constructor_args or []), **(fn_constructor_kwargs or {}))
                if isinstance(fn, type)
                else fn
            )
            out: list[Any] = []
            for block in self._materialized():
                for batch in _batches(block, batch_size, batch_format, zero_copy_batch):
                    out.extend(_blocks_of(call(batch, *args, **kwargs)))
            return out

        return LocalDataset(compute)

    def select_columns(self, cols: list[str]) -> LocalDataset:
        return LocalDataset(lambda: [_to_arrow(b).select(list(cols)) for b in self._materialized()])

    # ---- consumption -----------------------------------------------------------------------

    def materialize(self) -> LocalDataset:
        self._materialized()
        return self

    def count(self) -> int:
        from ray.data.block import BlockAccessor

        return sum(BlockAccessor.for_block(b).num_rows() for b in self._materialized())

    def num_blocks(self) -> int:
        return len(self._materialized())

    def schema(self, fetch_if_missing: bool = True) -> Any:
        """Ray's ``Schema`` of the first block that has columns; None when there is none, or
        (``fetch_if_missing=False``) when it would have to be computed."""
        if self._blocks is None and not fetch_if_missing:
            return None
        from ray.data.dataset import Schema

        for block in self._materialized():
            table = _to_arrow(block)
            if table.num_columns:
                return Schema(table.schema)
        return None

    def take_all(self) -> list[dict[str, Any]]:
        return [row for b in self._materialized() for row in _to_arrow(b).to_pylist()]

    def to_arrow(self) -> Any:
        import pyarrow as pa

        tables = [_to_arrow(b) for b in self._materialized()]
        return pa.concat_tables(tables) if tables else pa.table({})

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def equal_shards(self, n: int) -> list[Any]:
        """``n`` object refs of Arrow tables of ``rows // n`` rows each, in row order: the rows
        ``streaming_split(n, equal=True)`` hands ``n`` training workers (the remainder dropped)."""
        import ray

        table = self.to_arrow()
        size = table.num_rows // max(int(n), 1)
        return [ray.put(table.slice(i * size, size)) for i in range(max(int(n), 1))]

    def iter_torch_batches(
        self,
        *,
        batch_size: int | None = 256,
        prefetch_batches: int = 1,
        local_shuffle_buffer_size: int | None = None,
        device: str = "auto",
    ) -> Iterator[dict[str, Any]]:
        """Ray's ``iter_torch_batches``: dicts of tensors, ``batch_size`` rows each across
        blocks (the last one shorter), one per column as ``torch.as_tensor`` makes it of the
        column's numpy values, on ``device`` (``"auto"``: the Ray Train worker's device, as
        Ray's does; the CPU elsewhere). The local shuffle buffer is not offered here."""
        import numpy as np
        import torch

        if local_shuffle_buffer_size:
            raise NotImplementedError("LocalDataset.iter_torch_batches has no local shuffle buffer")
        target = torch.device(_train_device() if device == "auto" else device)
        table = self.to_arrow()
        step = table.num_rows if batch_size is None else int(batch_size)
        for start in range(0, table.num_rows, max(step, 1)):
            piece = table.slice(start, step)
            yield {
                # A copy: Arrow's buffers are read-only, torch wants writable memory.
                name: torch.as_tensor(np.array(piece.column(name).to_numpy(zero_copy_only=False))).to(target)
                for name in piece.column_names
            }

    def train_test_split(
        self, test_size: float | int, *, shuffle: bool = False, seed: int | None = None
    ) -> tuple[LocalDataset, LocalDataset]:
        """Ray's ``train_test_split`` without shuffling: the first rows train, the last test, cut
        where ``Dataset.split_proportionately([1 - test_size])`` cuts (``int(n * (1 - test_size))``)
        or, for an int, ``n - test_size`` rows in."""
        if shuffle:
            raise NotImplementedError("LocalDataset.train_test_split does not shuffle")
        table = self.to_arrow()
        rows = table.num_rows
        cut = int(rows * (1 - test_size)) if isinstance(test_size, float) else rows - int(test_size)
        if cut <= 0:  # Ray's own check
            raise ValueError("Couldn't create non-empty splits with the given proportions.")
        head, tail = table.slice(0, cut), table.slice(cut)
        return LocalDataset(lambda: [head]), LocalDataset(lambda: [tail])

    def stats(self) -> str:
        blocks = self._materialized()
        return f"LocalDataset: {self.count()} rows in {len(blocks)} block(s), computed in the job's driver"

    def write_datasink(self, datasink: Any) -> None:
        """What Ray's write operator does with a sink, in this process: ``on_write_start`` with
        the first block's schema, ``write`` of every block (one task's worth), then
        ``on_write_complete``; ``on_write_failed`` on an error. An empty dataset writes nothing
        (Ray's operator has no block to start on)."""
        from ray.data._internal.execution.interfaces.task_context import TaskContext
        from ray.data.block import BlockAccessor
        from ray.data.datasource.datasink import WriteResult

        try:
            blocks = [_to_arrow(b) for b in self._materialized()]
            blocks = [b for b in blocks if b.num_rows]
            if not blocks:
                return
            datasink.on_write_start(blocks[0].schema)
            written = datasink.write(iter(blocks), TaskContext(task_idx=0, op_name="Write"))
            accessors = [BlockAccessor.for_block(b) for b in blocks]
            datasink.on_write_complete(
                WriteResult(
                    num_rows=sum(a.num_rows() for a in accessors),
                    size_bytes=sum(a.size_bytes() for a in accessors),
                    write_returns=[written],
                )
            )
        except Exception as err:
            datasink.on_write_failed(err)
            raise

    def _materialized(self) -> list[Any]:
        if self._blocks is None:
            self._blocks = list(self._compute())
        return self._blocks


def _train_device() -> Any:
    """The device Ray Train gave this worker (its GPU), or the CPU outside a training worker."""
    try:
        from ray.train.torch import get_device

        return get_device()
    except Exception:
        return "cpu"


def _to_arrow(block: Any) -> Any:
    from ray.data.block import BlockAccessor

    return BlockAccessor.for_block(block).to_arrow()


def _batches(block: Any, batch_size: Any, batch_format: str | None, zero_copy: bool) -> Iterator[Any]:
    from ray.data.block import BlockAccessor

    accessor = BlockAccessor.for_block(block)
    rows = accessor.num_rows()
    # Ray's batcher makes no batch of an empty block: the transform is not called on it.
    step = rows if batch_size in (None, "auto") else int(batch_size)
    for start in range(0, rows, max(step, 1)):
        piece = BlockAccessor.for_block(accessor.slice(start, min(start + step, rows), copy=not zero_copy))
        yield piece.to_batch_format(batch_format)


def _blocks_of(result: Any) -> list[Any]:
    """A transform's output (a batch, or a generator of batches) as blocks."""
    from ray.data.block import BlockAccessor

    if isinstance(result, Iterator):
        return [BlockAccessor.batch_to_block(batch) for batch in result]
    return [BlockAccessor.batch_to_block(result)]
