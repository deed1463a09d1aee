"""Operator extra link to a Ray job's page in the Ray dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key under which operators store the dashboard URL of their Ray job.
RAY_JOB_URL_XCOM_KEY = "ray_job_url"


class RayJobLink(BaseOperatorLink):
    """``Ray Job`` button on a task instance: opens the job in the Ray dashboard."""

    name = "Ray Job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=RAY_JOB_URL_XCOM_KEY)
        return str(url) if url else ""
