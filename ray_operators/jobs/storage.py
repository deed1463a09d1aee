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

from ray_operators.contract.spec import (
    CATALOG_NAME,
    STORAGE_ROOT,
    StageError,
    StageSpec,
    catalog_env_properties,
)


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
    3. else the output table's own location, where the caller allows it by passing ``table``
       (fitted preprocessing states); models never go there, as orphan-file cleanup of the table
       would delete them.
    """
    if root := str(spec.catalog_properties.get(STORAGE_ROOT) or ""):
        return root.rstrip("/")
    warehouse = str(spec.catalog_properties.get("warehouse") or "")
    if is_location(warehouse):
        return warehouse.rstrip("/")
    if table is not None:
        return str(table.metadata.location).rstrip("/")
    where = "" if table is None else f" and {spec.output_table} does not exist yet"
    raise StageError(
        f"the catalog's 'warehouse' ({warehouse!r}) is not a location{where}: there is no place for this "
        f"stage's files; set '{STORAGE_ROOT}' in the iceberg connection's extra (e.g. s3://bucket/lakehouse)"
    )


def _frozen(properties: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    props = dict(properties or {})
    if name := props.get(CATALOG_NAME):
        # This node's own secrets for the catalog (read here, on the node that opens the file: they
        # never travel in a task's arguments).
        props = {**catalog_env_properties(name), **props}
    return tuple(sorted((str(k), str(v)) for k, v in props.items()))


@lru_cache(maxsize=16)
def _file_io(frozen: tuple[tuple[str, str], ...]) -> Any:
    from pyiceberg.io.pyarrow import PyArrowFileIO

    return PyArrowFileIO(dict(frozen))


#: Schemes whose paths in a pyarrow filesystem are ``<bucket>/<key>``.
_BUCKET_SCHEMES = ("s3", "s3a", "s3n", "gs", "gcs")


def filesystem(uri: str, properties: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path in it)`` for a URI or a local path. ``properties``: a stage's
    :meth:`~ray_operators.contract.spec.StageSpec.storage_properties`.

    The path is taken from the URI literally, not parsed as a URL: a ``#`` or ``?`` in a file or
    folder name is part of the name."""
    io = _file_io(_frozen(properties))
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return io.fs_by_scheme("file", None), uri
    if scheme == "file":
        return io.fs_by_scheme("file", None), rest
    if scheme in _BUCKET_SCHEMES:
        bucket = rest.partition("/")[0]
        return io.fs_by_scheme(scheme, bucket), rest
    parsed_scheme, netloc, path = io.parse_location(uri)
    return io.fs_by_scheme(parsed_scheme, netloc), path


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


def total_size(uris: list[str], properties: Mapping[str, str] | None = None) -> int:
    """The bytes of the files at ``uris`` together (a missing one counts 0)."""
    total = 0
    for uri in uris:
        fs, path = filesystem(uri, properties)
        total += max(int(fs.get_file_info(path).size or 0), 0)
    return total


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
    """A relative-path glob as a regex, like ``pathlib.Path.glob``: ``**/`` is any number of
    folders (none included), ``*`` and ``?`` stay within one folder, ``[...]`` is a character class
    (``[!...]`` negated); a leading ``./`` is dropped."""
    pattern = pattern.removeprefix("./")
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
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def check_readable(root: str, properties: Mapping[str, str] | None = None) -> None:
    """Fail with a clear error when a raw root cannot be listed: no credentials, a file where a
    folder should be, or a bucket that does not exist (a misspelled bucket would otherwise read as
    an empty root, run after run). A folder that does not exist yet only gets a line in the log."""
    import pyarrow.fs as pafs

    try:
        fs, path = filesystem(root, properties)
        if "://" in root and root.partition("://")[0] in _BUCKET_SCHEMES:
            bucket = path.partition("/")[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise StageError(f"raw input {root}: bucket {bucket!r} does not exist")
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            print(f"raw input {root} does not exist (yet): nothing to curate there", flush=True)
        listing(root, properties)
    except OSError as err:
        raise StageError(f"cannot list raw input {root}: {err}") from None
