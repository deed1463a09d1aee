"""The stage spec (ray_operators.contract.spec): its encoding, its checks, its lineage and secrets."""

from __future__ import annotations

import pytest

from ray_operators.contract.spec import StageError, StageSpec, TableInput, secret_problem
from tests.helpers.stage_specs import stage_spec


def test_spec_round_trips_through_the_entrypoint_encoding():
    spec = stage_spec(inputs=[{"table": "db.in", "snapshot_id": 5}], params={"x": 1})
    again = StageSpec.decode(spec.encode())
    assert again.to_json() == spec.to_json()
    assert again.inputs == [TableInput(table="db.in", snapshot_id=5)]
    assert again.catalog_kwargs()["name"] == "lake"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "merge"}, "output mode must be append, overwrite or upsert"),
        ({"mode": "upsert"}, "upsert needs keys"),
        ({"catalog_properties": {"s3.secret-access-key": "x"}}, "looks like a secret"),
        ({"catalog_properties": {"credential": "id:secret"}}, "looks like a secret"),
    ],
)
def test_bad_specs_fail_clearly(overrides, message):
    with pytest.raises(StageError, match=message):
        stage_spec(**overrides)


def test_lineage_properties_carry_identity_and_pinned_inputs(monkeypatch):
    monkeypatch.setenv("RAY_AIRFLOW_SUBMISSION_ID", "af-x-a2")
    spec = stage_spec(
        inputs=[
            {"table": "db.a", "snapshot_id": 7},
            {"table": "db.b", "from_snapshot_id": 1, "to_snapshot_id": 9},
        ]
    )
    props = spec.lineage_properties()
    assert props["lakehouse.run-key"] == "dag/task/run=1"
    assert props["lakehouse.ray-submission-id"] == "af-x-a2"
    assert props["lakehouse.input.db.a"] == "7"
    assert props["lakehouse.input.db.b"] == "1..9"


def test_run_key_is_required():
    with pytest.raises(StageError, match="run_key"):
        _ = stage_spec(run={}).run_key


def test_secrets_are_recognised_by_name_and_in_uris():
    assert secret_problem("s3.secret-access-key", "x")
    assert secret_problem("adls.account-key", "x")
    assert secret_problem("header.Authorization", "Bearer x")
    assert "password" in secret_problem("uri", "postgresql://user:pw@db/catalog")
    assert secret_problem("uri", "sqlite:////tmp/catalog.db") is None
    assert secret_problem("warehouse", "s3://bucket/wh") is None
