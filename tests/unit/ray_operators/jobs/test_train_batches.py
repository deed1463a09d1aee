"""Training ingest: ingest batches from Ray Data cut into minibatches, every row exactly once.

The real path (Ray Train over ``iter_torch_batches``) runs in the train stage's integration test;
here a stand-in iterator hands out ingest batches the way ``iter_torch_batches`` does, so the
cutting, stacking and shuffling can be checked row by row.
"""

from __future__ import annotations

import pytest
import torch

from ray_operators.jobs.train_batches import ingest_read_blocks, ingest_rows, iter_minibatches


class Batches:
    """``iter_torch_batches`` over an in-memory table: dict-of-tensor batches of ``batch_size`` rows."""

    def __init__(self, n: int) -> None:
        self.columns = {
            "a": torch.arange(n, dtype=torch.float64),
            "b": -torch.arange(n, dtype=torch.float64),
            "label": torch.arange(n) % 3,
        }
        self.calls: list[dict] = []

    def iter_torch_batches(self, *, batch_size, **kwargs):
        self.calls.append({"batch_size": batch_size, **kwargs})
        n = len(self.columns["label"])
        for start in range(0, n, batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.columns.items()}


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_row_once_in_minibatches_of_the_training_size(shuffle):
    source = Batches(10_000)
    batches = list(
        iter_minibatches(
            source,
            features=["a", "b"],
            label="label",
            batch_size=96,
            ingest_batch_size=1000,
            shuffle=shuffle,
            seed=1,
        )
    )
    # Ingest batches are a whole number of minibatches: 960 rows, so only the very last is short.
    assert source.calls[0]["batch_size"] == 960
    sizes = [len(y) for _, y in batches]
    assert sizes[:-1] == [96] * (len(sizes) - 1) and sizes[-1] == 10_000 % 96
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (10_000, 2)
    assert sorted(x[:, 0].tolist()) == list(range(10_000))
    # Rows stay whole: features and label of a row travel together.
    assert torch.equal(x[:, 1], -x[:, 0]) and torch.equal(y, x[:, 0].long() % 3)
    in_order = torch.equal(x[:, 0], torch.arange(10_000, dtype=torch.float32))
    assert in_order is not shuffle


def test_drop_last_and_small_ingest_sizes():
    source = Batches(1000)
    sizes = [
        len(y)
        for _, y in iter_minibatches(
            source, features=["a"], label="label", batch_size=300, ingest_batch_size=100, drop_last=True
        )
    ]
    assert source.calls[0]["batch_size"] == 300  # never smaller than a minibatch
    assert sizes == [300, 300, 300]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(iter_minibatches(source, features=["a"], label="label", batch_size=0))


def test_missing_column_is_named():
    with pytest.raises(KeyError, match=r"lacks columns \['nope'\]"):
        next(iter_minibatches(Batches(10), features=["a", "nope"], label="label", batch_size=4))


def test_empty_ingest_batches_yield_no_minibatch():
    class WithEmpty(Batches):
        def iter_torch_batches(self, *, batch_size, **kwargs):
            yield {k: v[:0] for k, v in self.columns.items()}
            yield from super().iter_torch_batches(batch_size=batch_size, **kwargs)

    sizes = [len(y) for _, y in iter_minibatches(WithEmpty(10), features=["a"], label="label", batch_size=4)]
    assert sizes == [4, 4, 2]


def test_read_blocks_one_per_cluster_cpu_at_least_one_per_worker():
    assert ingest_read_blocks("auto", num_workers=1, cluster_cpus=2) == 2
    assert ingest_read_blocks("auto", num_workers=4, cluster_cpus=2) == 4  # every worker gets a block
    assert ingest_read_blocks("auto", num_workers=1, cluster_cpus=64.0) == 64
    assert ingest_read_blocks("auto", num_workers=1, cluster_cpus=0) == 1
    assert ingest_read_blocks("ray") is None and ingest_read_blocks(None) is None  # Ray Data's default
    assert ingest_read_blocks(12) == 12 and ingest_read_blocks("12") == 12


@pytest.mark.parametrize("bad", [0, -3, "many", True, 2.5j, "1.5"])
def test_bad_read_blocks_named(bad):
    with pytest.raises(ValueError, match=r"read_blocks must be 'auto', 'ray' or a positive integer, got"):
        ingest_read_blocks(bad)


def test_default_ingest_batches_hold_about_16_mib():
    assert ingest_rows(8, 8192) == 229_376  # 28 minibatches of 8 features and a label
    assert ingest_rows(8, 8192) * 9 * 8 <= 16 * 1024 * 1024 < (ingest_rows(8, 8192) + 8192) * 9 * 8
    assert ingest_rows(1000, 8192) == 8192  # wide rows: never less than one minibatch
    source = Batches(10_000)
    rows = sum(
        len(y) for _, y in iter_minibatches(source, features=["a", "b"], label="label", batch_size=100)
    )
    assert rows == 10_000
    assert source.calls[0]["batch_size"] == ingest_rows(2, 100) == 699_000
