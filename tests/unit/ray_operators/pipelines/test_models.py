"""The spec models (ray_operators.pipelines.models): the committed JSON Schema is the generated one."""

from __future__ import annotations

import json

from ray_operators.pipelines.loader import find_specs
from ray_operators.pipelines.models import json_schema
from tests.helpers.paths import EXAMPLES, REPO
from tests.helpers.specs import BASE


def test_committed_json_schema_is_the_generated_one_and_accepts_the_examples():
    import jsonschema
    import yaml

    committed = json.loads((REPO / "ray_operators" / "pipelines" / "pipeline.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), "run: ray-lakehouse schema --output ..."
    validator = jsonschema.Draft202012Validator(committed)
    for path in find_specs(EXAMPLES):
        data = yaml.safe_load(path.read_text().replace("${LAKEHOUSE_RAW_ROOT}", "/raw"))
        data["start_date"] = str(data["start_date"])
        errors = list(validator.iter_errors(data))
        assert not errors, (path, [e.message for e in errors])
    bad = yaml.safe_load(BASE + "schedual: x\n")
    bad["start_date"] = str(bad["start_date"])
    assert any("schedual" in e.message for e in validator.iter_errors(bad))
