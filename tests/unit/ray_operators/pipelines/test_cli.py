"""The ray-lakehouse command line (ray_operators.pipelines.cli)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO
from tests.helpers.specs import GOOD


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from ray_operators.pipelines.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'ray', 'pyiceberg', 'pyarrow', 'torch'})\n"
        "print('IMPORTED', loaded, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd)


def test_cli_validate(tmp_path):
    ok = _cli("validate", "dags/pipelines")
    assert ok.returncode == 0, ok.stderr
    assert "4 spec(s), 0 with errors" in ok.stdout
    assert "IMPORTED []" in ok.stderr  # no Airflow, no Ray: runs anywhere, e.g. pre-commit

    (tmp_path / "bad.yaml").write_text(GOOD.replace("kind: preprocess", "kind: preproces"))
    bad = _cli("validate", str(tmp_path / "bad.yaml"), "dags/pipelines")
    assert bad.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:6:11: error: unknown stage kind `preproces`" in bad.stderr
    assert "5 spec(s), 1 with errors" in bad.stderr
    assert _cli("validate", str(tmp_path / "nothing-here")).returncode == 1


def test_cli_render_graph_and_schema():
    rendered = _cli("render", "lakehouse")
    assert rendered.returncode == 0, rendered.stderr
    assert "IMPORTED []" in rendered.stderr
    assert (
        "preprocess: ray_operators.operators.lakehouse.LakehouseStageOperator (after sense_curated)"
        in rendered.stdout
    )
    assert "sense_curated: ray_operators.sensors.iceberg.IcebergSnapshotSensor" in rendered.stdout
    data = json.loads(_cli("render", "lakehouse", "--json").stdout)
    assert [t["task_id"] for t in data["graph"]["tasks"]] == ["sense_curated", "preprocess", "train", "infer"]

    mermaid = _cli("graph", "lakehouse", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR")
    assert "sense_curated --> preprocess" in mermaid and "preprocess -.-> t_features_samples" in mermaid
    dot = _cli("graph", "lakehouse", "--format", "dot").stdout
    assert dot.startswith('digraph "lakehouse"') and '"train" -> "infer";' in dot

    schema = json.loads(_cli("schema").stdout)
    committed = json.loads((REPO / "ray_operators" / "pipelines" / "pipeline.schema.json").read_text())
    assert schema == committed
    missing = _cli("render", "no_such_pipeline")
    assert missing.returncode == 1 and "no pipeline named 'no_such_pipeline'" in missing.stderr


@pytest.mark.parametrize("name", ["lakehouse", "spark_logs", "features_on_snapshot", "curate_samples"])
def test_console_script_is_installed(name):
    script = Path(sys.executable).parent / "ray-lakehouse"
    out = subprocess.run([str(script), "render", name], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert f"DAG {name}" in out.stdout
