"""Fixtures the unit tests of several modules share."""

from __future__ import annotations

import json

import pytest

from tests.helpers.fake_ray import TOKEN, FakeRayDashboard


@pytest.fixture
def fake(monkeypatch):
    """A scripted Ray dashboard behind the connection ``fake_ray``."""
    with FakeRayDashboard() as dashboard:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FAKE_RAY",
            json.dumps({"conn_type": "ray", "host": "127.0.0.1", "port": dashboard.port, "password": TOKEN}),
        )
        yield dashboard
