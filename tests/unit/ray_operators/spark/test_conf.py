"""How an ``iceberg`` connection's catalog properties become Spark settings (no Spark needed)."""

from __future__ import annotations

import pytest

from ray_operators.spark.conf import jdbc_uri, spark_catalog_conf


def test_catalog_conf_maps_pyiceberg_properties_to_the_spark_runtime():
    public, secret = spark_catalog_conf(
        "lake",
        {"type": "rest", "uri": "http://rest:8181", "warehouse": "s3://w/", "credential": "id:secret"},
    )
    assert public["spark.sql.catalog.lake"] == "org.apache.iceberg.spark.SparkCatalog"
    assert public["spark.sql.catalog.lake.type"] == "rest"
    assert public["spark.sql.catalog.lake.uri"] == "http://rest:8181"
    assert secret == {"spark.sql.catalog.lake.credential": "id:secret"}

    public, secret = spark_catalog_conf(
        "pg", {"type": "sql", "uri": "postgresql+psycopg2://u:pw@db:5432/cat"}
    )
    assert public["spark.sql.catalog.pg.uri"] == "jdbc:postgresql://db:5432/cat"
    assert public["spark.sql.catalog.pg.jdbc.schema-version"] == "V1"
    assert secret == {"spark.sql.catalog.pg.jdbc.user": "u", "spark.sql.catalog.pg.jdbc.password": "pw"}
    assert jdbc_uri("sqlite:////tmp/c.db") == "jdbc:sqlite:/tmp/c.db"

    with pytest.raises(ValueError, match="type 'dynamodb' has no Spark equivalent"):
        spark_catalog_conf("x", {"type": "dynamodb"})


def test_the_catalogs_object_store_is_spark_s3a_too_with_its_keys_kept_secret():
    public, secret = spark_catalog_conf(
        "lake",
        {
            "type": "rest",
            "uri": "http://rest:8181",
            "s3.endpoint": "http://seaweedfs:8333",
            "s3.path-style-access": "true",
            "s3.access-key-id": "AKIA-example",
            "s3.secret-access-key": "s3cr3t",
        },
    )
    assert public["spark.hadoop.fs.s3a.endpoint"] == "http://seaweedfs:8333"
    assert public["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert secret["spark.hadoop.fs.s3a.access.key"] == "AKIA-example"
    assert secret["spark.hadoop.fs.s3a.secret.key"] == "s3cr3t"
    assert "s3cr3t" not in repr(public) and "AKIA-example" not in repr(public)
