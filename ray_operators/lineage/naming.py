"""How an Iceberg table and a raw folder are named in OpenLineage: pure functions, no imports.

Named the way OpenLineage's Spark integration names Iceberg tables, so a table written by a Spark
curation job and read by a Ray stage is one dataset in a lineage system:

- the dataset is the table's **physical location**: namespace ``scheme://authority`` (``file`` for a
  local path), name the path (``s3://bucket/wh/db/t`` -> ``s3://bucket`` and ``wh/db/t``;
  ``file:///wh/db/t`` -> ``file`` and ``/wh/db/t``);
- a ``TABLE`` symlink names it in its catalog: namespace the catalog's URI (credentials and query
  dropped), name ``namespace.table``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

#: Hadoop's S3 connectors name the same buckets: OpenLineage calls them all ``s3``.
_S3_SCHEMES = ("s3a", "s3n")


def storage_name(location: str) -> tuple[str, str]:
    """``(namespace, name)`` of a file or folder at ``location`` (a URI or a local path)."""
    parts = urlsplit(str(location))
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:  # a local path (``C:`` counts as one)
        path = parts.path if scheme in ("", "file") else str(location)
        return "file", (path.rstrip("/") or "/")
    if scheme in _S3_SCHEMES:
        scheme = "s3"
    netloc = parts.netloc.rpartition("@")[2]  # never a user name or password
    return f"{scheme}://{netloc}", parts.path.strip("/")


def catalog_namespace(properties: Mapping[str, str], catalog_name: str) -> str:
    """The namespace of a table's ``TABLE`` symlink: the catalog's URI without credentials, query
    or fragment (``sqlite:////wh/catalog.db``, ``http://rest:8181``; a Hive metastore's
    ``thrift://`` as ``hive://``, as OpenLineage's Spark integration names it); ``iceberg://<name>``
    for a catalog with no URI."""
    uri = str(properties.get("uri") or "").strip()
    if "://" not in uri:
        return f"iceberg://{catalog_name}"
    # By hand: urlunsplit would turn sqlite:////path into sqlite://path.
    scheme, _, rest = uri.partition("://")
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]
    path = (slash + path).split("?", 1)[0].split("#", 1)[0].rstrip("/")
    scheme = "hive" if scheme.lower() == "thrift" else scheme
    return f"{scheme}://{authority}{path}"
