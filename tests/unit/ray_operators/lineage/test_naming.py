"""OpenLineage names of Iceberg tables and raw folders (ray_operators.lineage): the way
OpenLineage's Spark integration names them, never with credentials."""

from __future__ import annotations

import pytest

from ray_operators.lineage.naming import catalog_namespace, storage_name


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("file:///wh/db/t", ("file", "/wh/db/t")),
        ("/wh/db/t/", ("file", "/wh/db/t")),
        ("s3://bucket/wh/db/t", ("s3://bucket", "wh/db/t")),
        ("s3a://bucket/wh/db/t", ("s3://bucket", "wh/db/t")),
        ("s3://key:secret@bucket/wh/t", ("s3://bucket", "wh/t")),
        ("gs://bucket/t", ("gs://bucket", "t")),
        ("hdfs://nn:8020/wh/t", ("hdfs://nn:8020", "wh/t")),
    ],
)
def test_storage_names(location, expected):
    assert storage_name(location) == expected


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"uri": "sqlite:////tmp/lake/catalog.db"}, "sqlite:////tmp/lake/catalog.db"),
        ({"uri": "http://rest:8181/"}, "http://rest:8181"),
        (
            {"uri": "postgresql+psycopg2://user:pw@db:5432/cat?sslmode=require"},
            "postgresql+psycopg2://db:5432/cat",
        ),
        ({"type": "glue"}, "iceberg://lake"),
        ({"uri": "thrift://metastore:9083"}, "hive://metastore:9083"),
        (
            {"uri": "https://user:secret@rest.example.com/api/catalog/?token=t#x"},
            "https://rest.example.com/api/catalog",
        ),
    ],
)
def test_catalog_namespace_never_carries_credentials(properties, expected):
    assert catalog_namespace(properties, "lake") == expected
