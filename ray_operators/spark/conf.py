"""Spark configuration for an Iceberg catalog described by pyiceberg catalog properties.

pyiceberg and Iceberg's Spark runtime share property names (``uri``, ``warehouse``,
``credential``, ``s3.endpoint``, ``s3.access-key-id``...), and pyiceberg's SqlCatalog uses the same
``iceberg_tables`` layout as Iceberg's JdbcCatalog, so a Spark job can open the very catalog the
Airflow side sees: same name, same properties.

Secret properties never go on the ``spark-submit`` command line (``ps`` and the Spark UI show it):
:func:`spark_catalog_conf` returns them apart, for a private ``--properties-file``.
"""

from __future__ import annotations

from typing import Any

from ray_operators.contract.spec import secret_problem

#: Maven coordinates of the Iceberg Spark runtime (Spark 3.5, Scala 2.12) and AWS bundle for S3, for
#: a Spark without the local runtime (``ray_operators.spark.runtime``): the Iceberg version that ran here.
ICEBERG_SPARK_PACKAGES = (
    "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.2,org.apache.iceberg:iceberg-aws-bundle:1.10.2"
)

#: pyiceberg's S3 properties -> Hadoop's S3A settings, so Spark reads ``s3a://`` raw files from the
#: object store the catalog's tables live in (as ``jobs/storage.py`` opens them on Ray). Needs
#: ``hadoop-aws`` on Spark's classpath (not part of the Iceberg runtime).
_S3A = {
    "s3.endpoint": "spark.hadoop.fs.s3a.endpoint",
    "s3.region": "spark.hadoop.fs.s3a.endpoint.region",
    "s3.path-style-access": "spark.hadoop.fs.s3a.path.style.access",
    "s3.access-key-id": "spark.hadoop.fs.s3a.access.key",
    "s3.secret-access-key": "spark.hadoop.fs.s3a.secret.key",
    "s3.session-token": "spark.hadoop.fs.s3a.session.token",
}

REDACTION = r"(?i)secret|password|token|access[.]key|credential|jdbc[.]user|session"

_TYPES = {"rest": "rest", "sql": "jdbc", "jdbc": "jdbc", "hive": "hive", "glue": "glue", "hadoop": "hadoop"}
#: pyiceberg-only properties that mean nothing to the Java runtime.
_PYTHON_ONLY = ("py-io-impl", "type", "init_catalog_tables")


def jdbc_uri(sqlalchemy_uri: str) -> str:
    """``sqlite:////p/catalog.db`` -> ``jdbc:sqlite:/p/catalog.db``; ``postgresql+psycopg2://h/db``
    -> ``jdbc:postgresql://h/db`` (credentials are not carried over: pass them as secrets)."""
    from urllib.parse import urlsplit

    if sqlalchemy_uri.startswith("jdbc:"):
        return sqlalchemy_uri
    parts = urlsplit(sqlalchemy_uri)
    dialect = parts.scheme.split("+", 1)[0]
    if dialect == "sqlite":
        return "jdbc:sqlite:" + sqlalchemy_uri.split(":///", 1)[1]
    if dialect in ("postgresql", "mysql"):
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"jdbc:{dialect}://{host}{port}{parts.path}"
    raise ValueError(f"no JDBC form for catalog uri scheme {parts.scheme!r}")


def spark_catalog_conf(name: str, properties: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(public conf, secret conf) that make ``name`` an Iceberg catalog in Spark."""
    kind = str(properties.get("type", "rest")).lower()
    if kind not in _TYPES:
        raise ValueError(
            f"catalog {name!r}: type {kind!r} has no Spark equivalent; use one of {sorted(_TYPES)}"
        )
    prefix = f"spark.sql.catalog.{name}"
    public = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": _TYPES[kind],
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        # The Spark UI, event logs and error reports redact settings that match: Spark's default
        # pattern misses a REST catalog's `credential` and a JDBC catalog's user.
        "spark.redaction.regex": REDACTION,
    }
    secret: dict[str, str] = {}
    for key, value in properties.items():
        if key in _PYTHON_ONLY:
            continue
        value = str(value)
        if key == "uri" and _TYPES[kind] == "jdbc":
            from urllib.parse import urlsplit

            parts = urlsplit(value)
            if parts.username:
                secret[f"{prefix}.jdbc.user"] = parts.username
            if parts.password:
                secret[f"{prefix}.jdbc.password"] = parts.password
            value = jdbc_uri(value)
        target = secret if secret_problem(key, value) else public
        target[f"{prefix}.{key}"] = value
        if key in _S3A:
            target[_S3A[key]] = value
    if _TYPES[kind] == "jdbc":
        public.setdefault(f"{prefix}.jdbc.schema-version", "V1")
    return public, secret
