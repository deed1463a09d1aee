"""Pipeline specs become DAGs (ray_operators.pipelines.build); a broken spec breaks only itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers.paths import REPO
from tests.helpers.specs import GOOD

DAGS = REPO / "dags"


LOADER = (DAGS / "lakehouse_pipelines.py").read_text()


def _bag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(folder))


def test_examples_become_the_dags_they_describe():
    from ray_operators.operators.lakehouse import LakehouseStageOperator
    from ray_operators.sensors.iceberg import IcebergSnapshotSensor

    bag = _bag(DAGS)
    assert not bag.import_errors, bag.import_errors

    lakehouse = bag.dags["lakehouse"]
    assert lakehouse.timetable.__class__.__name__ == "NullTimetable"  # manual and UI triggers
    assert [t.task_id for t in lakehouse.topological_sort()] == [
        "sense_curated",
        "preprocess",
        "train",
        "infer",
    ]
    sense, prep, train, infer = (
        lakehouse.get_task(t) for t in ("sense_curated", "preprocess", "train", "infer")
    )
    assert isinstance(sense, IcebergSnapshotSensor) and sense.deferrable and sense.start_from == "incremental"
    assert all(isinstance(t, LakehouseStageOperator) for t in (prep, train, infer))
    assert prep.upstream_task_ids == {"sense_curated"} and infer.upstream_task_ids == {"train"}
    assert prep.input_refs == [
        {"table": "curated.samples", "read": "pinned", "source": {"task": "sense_curated", "kind": "sensor"}}
    ]
    assert train.input_refs[0]["source"] == {"task": "preprocess", "kind": "stage"}  # the whole table
    assert infer.input_refs[0]["source"] == {"task": "preprocess", "kind": "stage", "appended": True}
    assert train.output_table == "ml.models" and train.stage_params["model_name"] == "samples_clf"
    assert infer.stage_params["model_table"] == "ml.models"
    assert "xcom_pull(task_ids='train')" in infer.stage_params["model_version"]
    assert {a.uri for a in prep.outlets} == {"iceberg://iceberg_default/features/samples"}
    assert {a.uri for a in prep.inlets} == {"iceberg://iceberg_default/curated/samples"}
    assert set(lakehouse.params.keys()) >= {
        "snapshot_ids",
        "from_snapshot_id",
        "to_snapshot_id",
        "input_table",
    }
    assert (
        "## Spec" in lakehouse.doc_md
        and "sense_curated" in lakehouse.doc_md
        and "## Resolved" in lakehouse.doc_md
    )
    assert lakehouse.default_args["retries"] == 1 and lakehouse.owner == "ml-platform"

    logs = bag.dags["spark_logs"]
    assert logs.timetable.__class__.__name__ == "CronDataIntervalTimetable"
    assert logs.catchup is False
    curate = logs.get_task("curate_logs")
    assert curate.stage == "curate" and curate.output_table == "logs.spark"
    assert curate.raw_paths == [os.environ["LAKEHOUSE_RAW_ROOT"] + "/spark-logs"]
    assert logs.default_args["retry_delay"].total_seconds() == 30

    live = bag.dags["features_on_snapshot"]
    assert live.timetable.__class__.__name__ == "AssetTriggeredTimetable"
    assets = list(live.timetable.asset_condition.objects)
    assert [a.uri for a in assets] == ["iceberg://iceberg_default/curated/samples"]
    assert assets[0].watchers and list(assets[0].watchers[0].trigger.operations) == ["append"]
    assert live.get_task("preprocess").input_refs[0]["source"] == {"kind": "events"}


def _folder(tmp_path: Path, specs: dict[str, str]) -> Path:
    folder = tmp_path / "dags"
    (folder / "pipelines").mkdir(parents=True)
    (folder / "lakehouse_pipelines.py").write_text(LOADER)
    for name, text in specs.items():
        (folder / "pipelines" / name).write_text(text)
    return folder


def test_a_broken_spec_is_an_import_error_that_names_it_and_the_others_load(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_LAKEHOUSE_STRICT", raising=False)
    bad = GOOD.replace("name: good", "name: bad").replace(
        "input: raw.events", "input: raw.events\n    num_gpu: 1"
    )
    folder = _folder(tmp_path, {"good.yaml": GOOD, "bad.yaml": bad})
    bag = _bag(folder)
    assert set(bag.dag_ids) == {"good"}
    (error,) = bag.import_errors.values()
    assert "PipelineSpecError: 1 pipeline spec did not load" in error
    assert f"{folder / 'pipelines' / 'bad.yaml'}:8:5: error: unknown key `num_gpu`" in error
    assert "did you mean `resources.num_gpus`?" in error and "good.yaml" not in error

    # Strict (CI): the first error fails the whole loader file.
    monkeypatch.setenv("RAY_LAKEHOUSE_STRICT", "1")
    bag = _bag(folder)
    assert not bag.dag_ids
    (error,) = bag.import_errors.values()
    assert "unknown key `num_gpu`" in error


def test_two_specs_with_one_name_keep_the_first(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_LAKEHOUSE_STRICT", raising=False)
    folder = _folder(tmp_path, {"a.yaml": GOOD, "b.yaml": GOOD})
    bag = _bag(folder)
    assert set(bag.dag_ids) == {"good"}
    assert "pipeline name 'good' is used by another spec too" in next(iter(bag.import_errors.values()))


def test_parsing_specs_into_dags_imports_no_ray_pyiceberg_pyarrow_or_torch():
    code = textwrap.dedent(
        f"""
        import sys
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag({str(DAGS)!r})
        assert not bag.import_errors, bag.import_errors
        assert {{"lakehouse", "spark_logs", "features_on_snapshot", "curate_samples"}} <= set(bag.dag_ids)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "pyiceberg", "pyarrow", "torch"))
        print("HEAVY", heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]
