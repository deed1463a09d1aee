"""Snapshot lineage records and the lineage graph (ray_operators.lineage.records), over a real
SqlCatalog with commits that carry the stages' summary properties."""

from __future__ import annotations

from ray_operators.lineage.records import lineage_graph, table_records
from ray_operators.lineage.svg import render_svg
from tests.helpers.lineage import lake_records


def test_records_are_newest_first_with_writer_reads_and_branch_state(lake):
    catalog, ids = lake
    features = table_records("lake", "features.events", catalog.load_table("features.events").metadata)
    assert [r.snapshot_id for r in features] == [ids["f2"], ids["f1"]]
    f2, f1 = features
    assert (f2.on_branch, f1.on_branch) == (False, True)  # f2 was rolled back
    assert f1.refs == ("main",) and f2.refs == ()
    assert (f1.dag_id, f1.run_id, f1.task_id, f1.stage, f1.engine) == (
        "lakehouse",
        "run <1>",
        "preprocess",
        "preprocess",
        "ray",
    )
    assert f1.submission_id == "raysubmit_preprocess" and f1.added_records == 3
    # A list reads each of its snapshots; a range reads up to its end.
    assert [(r.table, r.value, r.snapshot_ids) for r in f1.reads] == [
        ("curated.events", f"{ids['external']}+{ids['c1']}", (ids["external"], ids["c1"]))
    ]
    assert f2.reads[0].snapshot_ids == (ids["c2"],)
    curated = table_records("lake", "curated.events", catalog.load_table("curated.events").metadata)
    assert curated[0].raw == ("/raw/b",) and curated[0].reads == ()
    assert curated[-1].dag_id is None and curated[-1].engine is None  # outside a pipeline


def test_graph_edges_run_from_what_was_read_to_what_was_written(lake):
    catalog, ids = lake
    records = lake_records(catalog)
    graph = lineage_graph(records)
    f1, f2 = ("lake", "features.events", ids["f1"]), ("lake", "features.events", ids["f2"])
    c = {name: ("lake", "curated.events", ids[name]) for name in ("external", "c1", "c2")}
    assert graph.edges == sorted([(c["external"], f1), (c["c1"], f1), (c["c2"], f2)])
    # One run's outputs, followed upstream: what it read and nothing else.
    up = lineage_graph(records, only=[f1], upstream=True)
    assert set(up.nodes) == {f1, c["external"], c["c1"]}
    # A snapshot read but gone from the catalog (expired) stays a node, with no record.
    gone = ("lake", "curated.events", 42)
    orphan = [r for r in records if r.key == f1][0]
    orphan = orphan.__class__(
        **{**orphan.__dict__, "reads": (orphan.reads[0].__class__("curated.events", "42", (42,)),)}
    )
    assert lineage_graph([orphan], only=[f1]).nodes == {f1: orphan, gone: None}


def test_a_masked_record_hides_who_wrote_it(lake):
    catalog, ids = lake
    record = next(r for r in lake_records(catalog) if r.snapshot_id == ids["f1"]).masked()
    assert record.hidden and record.dag_id is None and record.submission_id is None and record.run_key is None
    assert record.reads  # what it read stays: it is table metadata, not the DAG's
    assert "a DAG you cannot read" in render_svg(lineage_graph([record], only=[record.key]))


def test_raw_inputs_are_nodes_and_isolated_snapshots_can_be_left_out(lake):
    from ray_operators.lineage.records import raw_node

    catalog, ids = lake
    records = lake_records(catalog)
    graph = lineage_graph(records, raw=True, connected=True)
    c1, c2 = ("lake", "curated.events", ids["c1"]), ("lake", "curated.events", ids["c2"])
    assert (raw_node("lake", "/raw/a"), c1) in graph.edges and (raw_node("lake", "/raw/b"), c2) in graph.edges
    # Every node drawn has an edge.
    assert all(any(key in edge for edge in graph.edges) for key in graph.nodes)
    assert ("lake", "curated.events", ids["external"]) in graph.nodes  # read by f1: kept
    svg = render_svg(graph)
    assert 'id="lake:raw:/raw/a"' in svg and "raw input" in svg
