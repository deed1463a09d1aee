"""The preprocess stage's fitted state without a Ray cluster: the JSON artifact and its versions,
the built-ins applied with pyarrow (categorical unseen code, tokenize parity with ``str.split``,
all-null and constant columns, the same numbers as Ray's own scalers), and which state is current."""

from __future__ import annotations

import json
import math
import textwrap

import pyarrow as pa
import pytest

from ray_operators.contract.lineage import PREPROCESS_STATE_URI, PREPROCESS_STATE_VERSION
from ray_operators.contract.params import UNSEEN_CATEGORY_CODE, PreprocessParams
from ray_operators.contract.spec import StageError, StageSpec, TableInput
from ray_operators.jobs import preprocess as pp
from tests.helpers.iceberg_helpers import catalog_properties, open_catalog

WANTED = {"standardize": ["x", "void_s", "flat_s"], "minmax": ["z", "void_m", "flat_m"]}


def _transforms() -> dict:
    """What a fit finds on: x = 0..99, z = 10..19, two all-null columns, two constant columns."""
    std_x = math.sqrt(sum((i - 49.5) ** 2 for i in range(100)) / 100)
    stats = {
        "mean(x)": 49.5,
        "std(x)": std_x,
        "mean(void_s)": None,  # Ray's StandardScaler on a column with no values
        "std(void_s)": None,
        "mean(flat_s)": 7.0,
        "std(flat_s)": 0.0,
        "min(z)": 10,
        "max(z)": 19,
        "min(void_m)": None,
        "max(void_m)": None,
        "min(flat_m)": 3,
        "max(flat_m)": 3,
    }
    counts = {"x": 100, "void_s": 0, "flat_s": 100, "z": 10, "void_m": 0, "flat_m": 10}
    wanted = {**WANTED, "categorical": ["color"], "tokenize": ["text"]}
    return pp.transforms_from_stats(wanted, stats, counts, {"color": ["red", None, "blue", "green", "red"]})


def _state(run_key: str = "dag/task/interval=1", **extra) -> dict:
    return {
        "format": pp.STATE_FORMAT,
        "run_key": run_key,
        "fitted_at": "2026-06-01T00:00:00+00:00",
        "fitted_on": {"table": "db.raw", "scope": "input", "snapshot_id": 1, "rows": 100},
        "transforms": _transforms(),
        **extra,
    }


def test_state_json_round_trip_and_versions_are_never_overwritten(tmp_path):
    root = f"file://{tmp_path}/warehouse/db.db/features/{pp.STATE_DIR}"
    uri, stored = pp.claim_version(root, 1, _state())
    assert uri == f"{root}/v1.json" and stored["version"] == 1
    path = tmp_path / "warehouse/db.db/features/preprocess_state/v1.json"
    text = path.read_text()
    # A complete JSON document (strict: no NaN), and what was fitted, as fitted.
    on_disk = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert on_disk == stored == pp.load_state(uri)
    assert on_disk["transforms"]["standardize"]["x"]["mean"] == 49.5
    assert on_disk["transforms"]["categorical"]["color"] == {
        "vocabulary": ["blue", "green", "red"],
        "unseen_code": UNSEEN_CATEGORY_CODE,
    }
    assert on_disk["transforms"]["tokenize"] == ["text"]
    assert on_disk["fitted_on"]["rows"] == 100 and on_disk["run_key"] == "dag/task/interval=1"

    # A retry of the same run (same run key) reuses v1 as stored: no second version, no rewrite.
    again_uri, again = pp.claim_version(root, 1, _state(fitted_at="later"))
    assert (again_uri, again) == (uri, stored) and path.read_text() == text
    assert sorted(p.name for p in path.parent.iterdir()) == ["v1.json"]

    # Another run that finds v1 taken gets v2; v1 is untouched.
    uri2, stored2 = pp.claim_version(root, 1, _state("dag/task/interval=2"))
    assert uri2 == f"{root}/v2.json" and stored2["version"] == 2
    assert path.read_text() == text
    # A refit starts after the current version.
    uri4, stored4 = pp.claim_version(root, 4, _state("dag/task/interval=3"))
    assert uri4.endswith("/v4.json") and stored4["version"] == 4


def test_load_state_says_what_is_wrong(tmp_path):
    with pytest.raises(StageError, match="does not exist"):
        pp.load_state(f"file://{tmp_path}/v9.json")
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(StageError, match="not a preprocessing state"):
        pp.load_state(f"file://{tmp_path}/bad.json")


def test_nan_statistics_are_refused_not_written():
    with pytest.raises(StageError, match="standardize 'x'.*NaN"):
        pp.transforms_from_stats({"standardize": ["x"]}, {"mean(x)": None, "std(x)": None}, {"x": 5}, {})
    with pytest.raises(StageError, match="minmax 'z'"):
        pp.transforms_from_stats({"minmax": ["z"]}, {"min(z)": float("nan"), "max(z)": 1.0}, {"z": 5}, {})


def test_all_null_and_constant_columns_get_the_documented_values():
    t = _transforms()
    assert t["standardize"]["void_s"] == {"mean": 0.0, "std": 1.0, "count": 0}
    assert t["minmax"]["void_m"] == {"min": 0.0, "max": 1.0, "count": 0}
    assert t["standardize"]["flat_s"]["std"] == 0.0  # stored as observed; applied as 1
    batch = pa.table(
        {
            "x": [49.5, 0.0, None],
            "void_s": pa.array([None, None, 5.0], pa.float64()),
            "flat_s": [7.0, 9.0, None],
            "z": pa.array([10, 19, 14], pa.int64()),
            "void_m": pa.array([None, 0.25, None], pa.float64()),
            "flat_m": pa.array([3, 5, None], pa.int64()),
            "color": ["red", "green", "blue"],
            "text": ["a", "b", "c"],
        }
    )
    out = pp.apply_transforms(batch, t).to_pydict()
    assert out["x"][:2] == [0.0, pytest.approx(-49.5 / t["standardize"]["x"]["std"])] and out["x"][2] is None
    # No values when fitted: values pass through, nulls stay null.
    assert out["void_s"] == [None, None, 5.0] and out["void_m"] == [None, 0.25, None]
    # Constant when fitted: the constant becomes 0, other values move by their distance from it.
    assert out["flat_s"] == [0.0, 2.0, None] and out["flat_m"] == [0.0, 2.0, None]
    assert out["z"] == [0.0, 1.0, pytest.approx(4 / 9)]
    schema = pp.apply_transforms(batch, t).schema
    assert all(schema.field(c).type == pa.float64() for c in ("x", "z", "void_s", "void_m", "flat_m"))


def test_categorical_codes_unseen_and_null_get_minus_one():
    t = _transforms()
    batch = pa.table(
        {
            **{c: pa.array([0.0] * 6) for c in ("x", "void_s", "flat_s", "z", "void_m", "flat_m")},
            "color": pa.array(["blue", "green", "red", "purple", None, ""], pa.large_string()),
            "text": [""] * 6,
        }
    )
    out = pp.apply_transforms(batch, t)
    assert out.column("color").to_pylist() == [0, 1, 2, -1, -1, -1]
    assert out.schema.field("color").type == pa.int64()
    # An empty vocabulary (a column that was all null when fitted): every code is the unseen one.
    codes = pp.category_codes(pa.chunked_array([["a", None], ["b"]]), [])
    assert codes.to_pylist() == [UNSEEN_CATEGORY_CODE] * 3
    # The vocabulary is the sorted, distinct, non-null string values.
    assert pp.transforms_from_stats({"categorical": ["c"]}, {}, {}, {"c": ["10", "9", None, "10"]})[
        "categorical"
    ]["c"]["vocabulary"] == ["10", "9"]


TEXTS = [
    "Hello World 0",
    "",
    " ",
    "   \t\n ",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\nmixed",
    "many    inner     spaces",
    "\u00a0no-break\u2003em\u3000ideographic",
    "x\x1cfile\x1dgroup\x1erecord\x1funit\x85next",
    "ÉTÉ Straße ΣΑ",
    "zero\u200bwidth",
    "tail\n",
    None,
]


def test_tokenize_matches_python_str_lower_split():
    expected = [(t or "").lower().split() for t in TEXTS]
    assert pp.tokenize_values(pa.array(TEXTS)).to_pylist() == expected
    # Chunked, sliced, empty chunks and large_string: the same lists.
    arr = pa.array(TEXTS, pa.large_string())
    chunked = pa.chunked_array([arr.slice(0, 4), arr.slice(4, 0), arr.slice(4)])
    assert pp.tokenize_values(chunked).to_pylist() == expected
    assert pp.tokenize_values(arr.slice(3, 5)).to_pylist() == expected[3:8]
    assert pp.tokenize_values(pa.array([], pa.string())).to_pylist() == []
    assert pp.tokenize_values(pa.nulls(2, pa.string())).to_pylist() == [[], []]


def test_tokenize_documented_differences_from_python():
    # Python's full case mapping (documented in the module): the one character whose lower case is
    # two characters, and a capital sigma at the end of a word (final sigma, ς).
    assert "İ".lower() == "i̇" and pp.tokenize_values(pa.array(["İ"])).to_pylist() == [["i"]]
    assert "ΟΔΟΣ".lower() == "οδος" and pp.tokenize_values(pa.array(["ΟΔΟΣ"])).to_pylist() == [["οδοσ"]]


def test_scalers_give_the_numbers_of_rays_own_scalers_with_stats_set_from_the_json():
    from ray.data.preprocessor import Preprocessor
    from ray.data.preprocessors import MinMaxScaler, StandardScaler

    t = _transforms()
    batch = pa.table(
        {
            "x": [0.0, 12.25, 99.0, 49.5],
            "flat_s": [7.0, 9.0, 6.0, 7.0],
            "z": [10.0, 19.0, 13.0, 25.0],
            "flat_m": [3.0, 5.0, 1.0, 3.0],
        }
    )
    standard = StandardScaler(columns=["x", "flat_s"])
    minmax = MinMaxScaler(columns=["z", "flat_m"])
    assert standard.fit_status() == Preprocessor.FitStatus.NOT_FITTED
    for column, s in t["standardize"].items():
        standard.stats_.update({f"mean({column})": s["mean"], f"std({column})": s["std"]})
    for column, s in t["minmax"].items():
        minmax.stats_.update({f"min({column})": s["min"], f"max({column})": s["max"]})
    assert standard.fit_status() == minmax.fit_status() == Preprocessor.FitStatus.FITTED
    ray_out = minmax.transform_batch(standard.transform_batch(batch).to_pandas())
    ours = pp.apply_transforms(
        batch,
        {
            "standardize": {c: t["standardize"][c] for c in ("x", "flat_s")},
            "minmax": {c: t["minmax"][c] for c in ("z", "flat_m")},
        },
    ).to_pandas()
    for column in ("x", "flat_s", "z", "flat_m"):
        assert ours[column].tolist() == pytest.approx(ray_out[column].tolist(), abs=1e-12), column


def test_check_params_one_builtin_per_column_and_known_fit_on():
    pp.check_params(PreprocessParams(standardize=["a"], minmax=["b"], fit_on="table"))
    with pytest.raises(StageError, match="'a' is in both standardize and minmax"):
        pp.check_params(PreprocessParams(standardize=["a"], minmax=["a"]))
    with pytest.raises(StageError, match="fit_on"):
        pp.check_params(PreprocessParams(fit_on="everything"))
    assert pp._truthy("True") and pp._truthy(True) and not pp._truthy("False") and not pp._truthy(False)


def test_a_change_of_builtin_columns_asks_for_a_refit():
    state = _state()
    same = PreprocessParams(
        standardize=["flat_s", "x", "void_s"],
        minmax=WANTED["minmax"],
        categorical=["color"],
        tokenize=["text"],
    )
    pp.check_state_matches(state, same, "file:///s/v1.json")  # order does not matter
    added = PreprocessParams(**{**same.__dict__, "minmax": [*WANTED["minmax"], "w"]})
    with pytest.raises(StageError, match=r"differ from those of its fitted state v1 .*refit: true"):
        pp.check_state_matches({**state, "version": 1}, added, "file:///s/v1.json")
    with pytest.raises(StageError, match="refit"):
        pp.check_state_matches({**state, "version": 1}, PreprocessParams(), "file:///s/v1.json")


def test_display_stats_cut_long_vocabularies():
    state = {"transforms": {"categorical": {"c": {"vocabulary": [f"v{i:03}" for i in range(500)]}}}}
    shown = pp.display_stats(state)["categorical.c"]
    assert shown["vocabulary_size"] == 500 and len(shown["vocabulary_head"]) == pp.DISPLAY_VOCABULARY
    assert "vocabulary" not in shown
    assert pp.display_stats(_state())["categorical.color"]["vocabulary"] == ["blue", "green", "red"]


def _spec(root, output: str = "db.features") -> StageSpec:
    return StageSpec(
        stage="preprocess",
        catalog_name="t",
        catalog_properties=catalog_properties(root),
        output_table=output,
        run={"run_key": "k"},
    )


def test_current_state_is_the_newest_on_the_branch_and_a_rollback_takes_it_back(tmp_path):
    catalog = open_catalog(tmp_path, "t")
    catalog.create_namespace_if_not_exists("db")
    schema = pa.schema([("x", pa.float64())])
    table = catalog.create_table("db.features", schema=schema)
    spec = _spec(tmp_path)
    root = pp.state_root(spec, table)
    # Under the warehouse, by namespace and name: the same place before and after the table
    # exists, so concurrent first runs find each other's version 1.
    assert root == pp.state_root(spec) == f"file://{tmp_path}/warehouse/db/features/{pp.STATE_DIR}"
    # A catalog whose warehouse is a name (REST): the table's location; no table, no place.
    named = StageSpec(**{**spec.__dict__, "catalog_properties": {"type": "rest", "warehouse": "lakehouse"}})
    assert pp.state_root(named, table) == f"{table.metadata.location}/{pp.STATE_DIR}"
    with pytest.raises(StageError, match="'warehouse' \\('lakehouse'\\) is not a location"):
        pp.state_root(named)
    assert pp.current_state(table) is None and pp._first_version(spec, table) is None

    uri1, _ = pp.claim_version(root, 1, _state("a"))
    # A concurrent first run finds v1 (fitted, not yet committed) and applies it, not its own fit.
    assert pp._first_version(spec, None) == (uri1, pp.load_state(uri1))
    uri2, _ = pp.claim_version(root, 2, _state("b"))
    rows = pa.table({"x": [1.0]}, schema=schema)
    table.append(rows, snapshot_properties={PREPROCESS_STATE_URI: uri1, PREPROCESS_STATE_VERSION: "1"})
    on_v1 = table.metadata.current_snapshot_id
    table.append(rows)  # another writer: names no state, hides nothing
    assert pp.state_ref(table) == (uri1, 1) and pp.current_state(table)["run_key"] == "a"
    table.append(rows, snapshot_properties={PREPROCESS_STATE_URI: uri2, PREPROCESS_STATE_VERSION: "2"})
    assert pp.state_ref(table) == (uri2, 2) and pp.current_state(table)["version"] == 2

    # Rolled back off the branch, the v2 snapshot no longer counts (it is still in the metadata).
    table.manage_snapshots().set_current_snapshot(on_v1).commit()
    table = catalog.load_table("db.features")
    assert pp.state_ref(table) == (uri1, 1)
    # A model trained on v2 can still find its state by version.
    assert pp.state_by_version(table, 2)["run_key"] == "b"
    assert pp.state_by_version(table, 1)["run_key"] == "a"


def test_refit_reads_as_of_the_newest_snapshot_of_the_input(tmp_path):
    catalog = open_catalog(tmp_path, "t")
    catalog.create_namespace_if_not_exists("db")
    schema = pa.schema([("x", pa.float64())])
    raw = catalog.create_table("db.raw", schema=schema)
    ids = []
    for i in range(3):
        raw.append(pa.table({"x": [float(i)]}, schema=schema))
        ids.append(raw.metadata.current_snapshot_id)
    spec = _spec(tmp_path)
    # A list: the newest by the branch's ancestry (whatever order, whatever the ids' sizes).
    assert pp.pinned_snapshot(spec, TableInput("db.raw", snapshot_ids=[ids[1], ids[0]])) == ids[1]
    assert pp.pinned_snapshot(spec, TableInput("db.raw", snapshot_ids=list(reversed(ids)))) == ids[2]
    assert (
        pp.pinned_snapshot(spec, TableInput("db.raw", from_snapshot_id=ids[0], to_snapshot_id=ids[2]))
        == ids[2]
    )
    assert pp.pinned_snapshot(spec, TableInput("db.raw", snapshot_id=ids[0])) == ids[0]


def test_pipeline_refit_and_fit_on_reach_the_stage_params(tmp_path):
    from ray_operators.pipelines.graph import build_graph
    from ray_operators.pipelines.loader import load_pipeline

    spec = tmp_path / "p.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            name: p
            start_date: 2026-01-01
            stages:
              - name: prep
                kind: preprocess
                input: raw.events
                output: feat.events
                standardize: [x]
                refit: true
                fit_on: table
              - name: prep2
                kind: preprocess
                input: raw.events
                output: feat.other
            """
        )
    )
    graph = build_graph(load_pipeline(spec).pipeline)
    prep, prep2 = graph.tasks
    assert prep.arguments["stage_params"] == {"standardize": ["x"], "refit": True, "fit_on": "table"}
    assert prep2.arguments["stage_params"] == {}  # the defaults: apply the current state
    # The UI can trigger a refit run.
    assert graph.dag_arguments["params"]["refit"]["default"] is False


def test_words_of_a_last_string_ending_in_whitespace_do_not_depend_on_the_bytes_after_the_buffer():
    """Arrow's utf8_split_whitespace reads past the end of the values buffer: with a byte >= 0x80
    lying there, a last string ending in whitespace kept its whitespace (``["tail\\n"]``). Here the
    buffer is a slice of a larger one, so that byte is always there."""
    import numpy as np

    data = pa.py_buffer(b"a b\ntail\n\x80\x80\x80\x80").slice(0, 9)
    offsets = pa.py_buffer(np.array([0, 4, 9], dtype=np.int32).tobytes())
    text = pa.Array.from_buffers(pa.string(), 2, [None, offsets, data])
    assert text.to_pylist() == ["a b\n", "tail\n"]
    assert pp.split_words(text).to_pylist() == [["a", "b"], ["tail"]]
