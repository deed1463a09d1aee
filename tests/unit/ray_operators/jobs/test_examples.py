"""ray_operators/jobs/examples.py: the example transforms and the slow storage."""

from __future__ import annotations

import pickle

from pyiceberg.io import load_file_io

from ray_operators.jobs import examples


def test_slow_data_file_io_waits_before_each_data_file_only(tmp_path, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    io = load_file_io(
        {"py-io-impl": "ray_operators.jobs.examples.SlowDataFileIO", examples.SLOW_DATA_FILE_SECONDS: "3"}
    )
    assert type(io) is examples.SlowDataFileIO
    data = tmp_path / "t" / "data" / "00000-0-x.parquet"
    io.new_output(str(data)).create().close()
    io.new_output(str(tmp_path / "t" / "metadata" / "00001-x.metadata.json")).create().close()
    assert slept == [3.0] and data.exists()
    # Ray ships the table's FileIO to its write tasks.
    assert type(pickle.loads(pickle.dumps(io))) is examples.SlowDataFileIO


def test_slow_identity_returns_its_batch(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda _s: None)
    batch = {"x": [1, 2]}
    assert examples.slow_identity(batch, seconds=5) is batch
