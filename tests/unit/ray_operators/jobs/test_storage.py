"""Files beside the tables, opened like the catalog's own data files (``jobs/storage.py``), and the
catalog secrets a Ray node's environment supplies (``contract.spec.catalog_env_properties``)."""

from __future__ import annotations

import pytest

from ray_operators.contract.spec import STORAGE_ROOT, StageError, StageSpec, catalog_env_properties
from ray_operators.curation.spark_logs import discover
from ray_operators.jobs import storage
from ray_operators.jobs.tabular import discover as discover_tabular


def _spec(**props: str) -> StageSpec:
    return StageSpec(stage="preprocess", catalog_name="c", catalog_properties=props, output_table="ns.out")


def test_glob_regex_follows_pathlib_glob():
    match = storage.glob_regex("**/*.csv").match
    assert match("a.csv") and match("x/a.csv") and match("x/y/a.csv")
    assert not match("a.csv.bak") and not match("x/a.json")
    one_level = storage.glob_regex("*/b?.json").match
    assert one_level("x/b1.json") and not one_level("b1.json") and not one_level("x/y/b1.json")


def test_storage_root_prefers_the_connection_root_then_a_warehouse_location():
    assert storage.storage_root(_spec(warehouse="s3://wh/", **{STORAGE_ROOT: "s3://files/"})) == "s3://files"
    assert storage.storage_root(_spec(warehouse="file:///w/")) == "file:///w"
    with pytest.raises(StageError, match="not a location"):
        storage.storage_root(_spec(warehouse="my_catalog"))


def test_files_round_trip_and_missing_files_read_as_none(tmp_path):
    uri = f"file://{tmp_path}/deep/er/v1.json"
    assert storage.read_bytes(uri) is None
    storage.write_bytes(uri, b"{}")
    assert storage.read_bytes(uri) == b"{}"
    assert storage.read_bytes(str(tmp_path / "deep" / "er" / "v1.json")) == b"{}"


def test_discovery_lists_units_through_the_filesystem(tmp_path):
    for folder in ("spark-b", "spark-a", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "1.log").write_text("x\n")
    (tmp_path / "spark-a" / "notes.txt").write_text("not a log\n")
    (tmp_path / "spark-file").write_text("a file, not a unit\n")
    found = discover(f"file://{tmp_path}")
    assert found == {
        "spark-a": [str(tmp_path / "spark-a" / "1.log")],
        "spark-b": [str(tmp_path / "spark-b" / "1.log")],
    }
    (tmp_path / "t" / "x").mkdir(parents=True)
    (tmp_path / "t" / "a.csv").write_text("a\n")
    (tmp_path / "t" / "x" / "b.csv").write_text("a\n")
    assert discover_tabular(str(tmp_path / "t"), "csv", None) == {
        "a.csv": [str(tmp_path / "t" / "a.csv")],
        "x/b.csv": [str(tmp_path / "t" / "x" / "b.csv")],
    }


def test_an_unreadable_raw_root_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StageError, match="cannot list raw input"):
        discover(str(tmp_path / "a-file"))


def test_catalog_secrets_come_from_the_node_environment_under_the_connection_name():
    environ = {
        "PYICEBERG_CATALOG__ICEBERG_DEFAULT__CREDENTIAL": "id:secret",
        "PYICEBERG_CATALOG__ICEBERG_DEFAULT__S3__ACCESS_KEY_ID": "AK",
        "PYICEBERG_CATALOG__OTHER__CREDENTIAL": "not ours",
        "UNRELATED": "x",
    }
    assert catalog_env_properties("iceberg_default", environ) == {
        "credential": "id:secret",
        "s3.access-key-id": "AK",
    }
    assert catalog_env_properties("nothing", environ) == {}


def test_glob_character_classes_and_a_leading_dot_slash():
    match = storage.glob_regex("./data-[0-9].csv").match
    assert match("data-1.csv") and not match("data-x.csv")
    assert storage.glob_regex("[!a]*.csv").match("b.csv") and not storage.glob_regex("[!a]*.csv").match(
        "a.csv"
    )


def test_names_with_hash_and_question_marks_are_names(tmp_path):
    """A URI's path is taken literally: '#' or '?' in a raw file's name is not a URL fragment."""
    folder = tmp_path / "spark-a#1"
    folder.mkdir()
    (folder / "x?.log").write_text("line\n")
    (tmp_path / "spark-a").mkdir()  # what a URL parser would read instead
    found = discover(f"file://{tmp_path}")
    assert found["spark-a#1"] == [str(folder / "x?.log")]
    assert storage.read_bytes(f"file://{folder}/x?.log") == b"line\n"


def test_a_corrupt_parquet_file_is_quarantined_and_a_vanished_file_fails(tmp_path):
    from ray_operators.jobs.tabular import parse_file

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet at all")
    item = {"path": str(bad), "format": "parquet", "unit": "bad.parquet", "columns": '{"a": "long"}'}
    item["required"] = "[]"
    (record,) = parse_file(item)
    assert record["row"] is None and record["reason"].startswith("bad_file: ")
    with pytest.raises(FileNotFoundError, match="disappeared"):
        parse_file({**item, "path": str(tmp_path / "gone.parquet")})


def test_files_beside_the_tables_use_the_node_secrets_of_the_named_catalog(monkeypatch):
    spec = _spec(warehouse="file:///w")
    props = spec.storage_properties()
    monkeypatch.setenv("PYICEBERG_CATALOG__C__S3__ACCESS_KEY_ID", "from-the-node")
    io = storage._file_io(storage._frozen(props))
    assert io.properties["s3.access-key-id"] == "from-the-node"
    assert "s3.access-key-id" not in props  # never in what travels
