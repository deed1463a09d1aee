"""Files outside the tables (raw inputs, model artifacts, fitted states, Ray Train storage), opened
the way the catalog opens its own data files.

One rule: a URI is opened through pyiceberg's ``PyArrowFileIO`` built from the stage's catalog
properties, so ``s3://`` gets the catalog's ``s3.endpoint``, region and path style, and its keys
from the node's own environment (``AWS_ACCESS_KEY_ID``...) or instance role, exactly like the
table's data files. Local paths and ``file://`` URIs work the same way.

Runs on the Ray cluster; imports no Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ray_operators.contract.spec import STORAGE_ROOT, StageError, StageSpec


def is_location(value: str) -> bool:
    """Whether a catalog's ``warehouse`` is a place (``s3://b``, ``file:///w``, ``/w``) rather than
    a name (a REST catalog such as Polaris or Unity names its warehouse)."""
    return "://" in value or value.startswith("/")


def storage_root(spec: StageSpec, table: Any | None = None) -> str:
    """Where a stage keeps files beside its tables (fitted states, models, Ray Train runs):

    1. the catalog property ``lakehouse.storage-root`` (:data:`STORAGE_ROOT`), set in the
       ``iceberg`` connection's extra. Needed where the warehouse is an S3 Tables bucket (as with
       SeaweedFS or AWS S3 Tables): such a bucket holds only the catalog's own table files;
    2. else the catalog's ``warehouse`` when it is a location;
    3. else the output table's own location (``table`` must then be given).
    """
    if root := str(spec.catalog_properties.get(STORAGE_ROOT) or ""):
        return root.rstrip("/")
    warehouse = str(spec.catalog_properties.get("warehouse") or "")
    if is_location(warehouse):
        return warehouse.rstrip("/")
    if table is not None:
        return str(table.metadata.location).rstrip("/")
    raise StageError(
        f"the catalog's 'warehouse' ({warehouse!r}) is not a location and {spec.output_table} does not "
        "exist yet: there is no place for this stage's files (create the table first, or set a root)"
    )


def _frozen(properties: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (properties or {}).items()))


@lru_cache(maxsize=16)
def _file_io(frozen: tuple[tuple[str, str], ...]) -> Any:
    from pyiceberg.io.pyarrow import PyArrowFileIO

    return PyArrowFileIO(dict(frozen))


def filesystem(uri: str, properties: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path in it)`` for a URI or a local path."""
    io = _file_io(_frozen(properties))
    scheme, netloc, path = io.parse_location(uri)
    return io.fs_by_scheme(scheme, netloc), path


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def listing(root: str, properties: Mapping[str, str] | None = None, *, recursive: bool = False) -> list[Any]:
    """``pyarrow.fs.FileInfo`` of what lies under ``root`` (nothing when it does not exist), sorted
    by path. Paths come back in ``root``'s own form: ``s3://bucket/...`` stays a URI."""
    import pyarrow.fs as pafs

    fs, path = filesystem(root, properties)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    return sorted(infos, key=lambda info: info.path)


def uri_of(root: str, root_path: str, path: str) -> str:
    """The URI of ``path`` (a path in ``root``'s filesystem), in the same form as ``root``
    (a ``file://`` root gives plain local paths)."""
    root = root.removeprefix("file://")
    relative = path[len(root_path.rstrip("/")) :].lstrip("/")
    return join(root, relative) if relative else root


def read_bytes(uri: str, properties: Mapping[str, str] | None = None) -> bytes | None:
    """The bytes at ``uri``, or None when there is no such file."""
    fs, path = filesystem(uri, properties)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def write_bytes(uri: str, data: bytes, properties: Mapping[str, str] | None = None) -> None:
    fs, path = filesystem(uri, properties)
    parent = path.rpartition("/")[0]
    if parent and fs.type_name == "local":  # object stores have no folders (and may refuse markers)
        fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def open_text(uri: str, properties: Mapping[str, str] | None = None, *, newline: str | None = None) -> Any:
    """A text stream over ``uri`` (UTF-8, undecodable bytes replaced), for line-by-line parsing."""
    import io

    fs, path = filesystem(uri, properties)
    return io.TextIOWrapper(fs.open_input_stream(path), encoding="utf-8", errors="replace", newline=newline)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A relative-path glob as a regex: ``**/`` is any number of folders (none included), ``*``
    and ``?`` stay within one folder, like ``pathlib.Path.glob``."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def check_readable(root: str, properties: Mapping[str, str] | None = None) -> None:
    """Fail with a clear error when a raw root cannot be listed (bad bucket, no credentials)."""
    try:
        listing(root, properties)
    except OSError as err:
        raise StageError(f"cannot list raw input {root}: {err}") from None
