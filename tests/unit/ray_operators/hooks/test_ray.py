"""RayJobsHook on error paths, against a scripted fake dashboard."""

from __future__ import annotations

import pytest

from ray_operators.hooks.ray import RayAuthError, RayConnectionConfig, RayJobsError, RayJobsHook
from tests.helpers.fake_ray import TOKEN, job, ray_conn


def test_token_goes_in_authorization_header_by_default(fake):
    fake.on("GET", "/api/jobs/j", (200, job("RUNNING", "j")))
    assert RayJobsHook("fake_ray").get_job_info("j")["status"] == "RUNNING"
    headers = fake.requests[-1]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert "X-Ray-Authorization" not in headers


def test_proxy_mode_sends_x_ray_authorization_and_extra_headers_and_cookies(fake, monkeypatch):
    ray_conn(
        monkeypatch,
        "proxied_ray",
        host=f"http://127.0.0.1:{fake.port}",
        password=TOKEN,
        extra={
            "auth_header": "x-ray-authorization",
            "headers": {"Authorization": "Basic proxy-creds"},
            "cookies": {"session": "abc"},
        },
    )
    fake.on("GET", "/api/jobs/j", (200, job("RUNNING", "j")))
    RayJobsHook("proxied_ray").get_job_info("j")
    headers = fake.requests[-1]["headers"]
    assert headers["X-Ray-Authorization"] == f"Bearer {TOKEN}"
    assert headers["Authorization"] == "Basic proxy-creds"
    assert "session=abc" in headers["Cookie"]


def test_config_hides_secrets_and_builds_dashboard_links(monkeypatch):
    ray_conn(
        monkeypatch,
        "cfg_ray",
        host="ray.internal",
        port=8265,
        schema="https",
        password=TOKEN,
        extra={"dashboard_url": "https://ray.example.com/", "metadata": {"team": "ml"}, "verify": "false"},
    )
    config = RayJobsHook("cfg_ray").config
    assert config.base_url == "https://ray.internal:8265"
    assert config.verify is False
    assert config.metadata == {"team": "ml"}
    assert TOKEN not in repr(config)
    assert config.scrub(f"boom {TOKEN} boom") == "boom *** boom"
    assert config.job_url("a b") == "https://ray.example.com/#/jobs/a%20b"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": ""}, "host is empty"),
        ({"host": "h", "schema": "ftp"}, "schema must be 'http' or 'https'"),
        ({"host": "h", "extra": {"headers": "{not json"}}, "extra.headers is not valid JSON"),
        ({"host": "h", "extra": {"cookies": [1]}}, "extra.cookies must be a JSON object"),
        ({"host": "h", "extra": {"auth_header": "x-token"}}, "extra.auth_header must be one of"),
    ],
)
def test_bad_connection_fields_name_the_connection_and_field(monkeypatch, fields, message):
    ray_conn(monkeypatch, "broken_ray", **fields)
    with pytest.raises(RayJobsError, match=message) as err:
        _ = RayJobsHook("broken_ray").config
    assert "'broken_ray'" in str(err.value)


def test_server_error_is_one_line_without_secrets(fake):
    fake.on("GET", "/api/jobs/j", (500, f"Traceback...\nValueError: bad thing near {TOKEN}\n"))
    with pytest.raises(RayJobsError) as err:
        RayJobsHook("fake_ray").get_job_info("j")
    text = str(err.value)
    assert "HTTP 500" in text and "ValueError: bad thing" in text
    assert TOKEN not in text and "\n" not in text


@pytest.mark.parametrize(("status", "words"), [(401, "no auth token was sent"), (403, "wrong or expired")])
def test_auth_failures_say_what_is_wrong(fake, status, words):
    fake.on("GET", "/api/jobs/j", (status, "Unauthorized"))
    with pytest.raises(RayAuthError, match=words):
        RayJobsHook("fake_ray").get_job_info("j")


def test_unreachable_cluster_is_a_clear_error(monkeypatch):
    from ray_operators.devstack.ports import free_port

    ray_conn(monkeypatch, "gone_ray", host="127.0.0.1", port=free_port(), password=TOKEN)
    with pytest.raises(RayJobsError, match="Cannot reach the Ray Jobs API"):
        RayJobsHook("gone_ray").get_job_info("j")
    ok, message = RayJobsHook("gone_ray").test_connection()
    assert not ok and "Cannot reach" in message and TOKEN not in message


def test_missing_job_is_none_not_an_error(fake):
    fake.on("GET", "/api/jobs/nope", (404, "Job nope does not exist"))
    assert RayJobsHook("fake_ray").get_job_info("nope") is None


def test_connection_config_from_connection_object():
    from airflow.models import Connection

    conn = Connection(conn_id="c", conn_type="ray", host="https://ray.example.com/prefix/", password=TOKEN)
    config = RayConnectionConfig.from_connection(conn)
    assert config.base_url == "https://ray.example.com/prefix"
    assert config.request_headers() == {"Authorization": f"Bearer {TOKEN}"}
