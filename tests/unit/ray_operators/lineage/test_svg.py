"""The lineage graph drawn as SVG (ray_operators.lineage.svg), over the lineage tests' lake."""

from __future__ import annotations

import re

from ray_operators.lineage.records import lineage_graph
from ray_operators.lineage.svg import render_svg
from tests.helpers.lineage import lake_records


def test_svg_draws_every_node_and_edge_with_links_and_escaped_names(lake):
    catalog, ids = lake
    records = lake_records(catalog)
    graph = lineage_graph(records)
    svg = render_svg(
        graph, lambda key, record: f"/run?id={key[2]}&x=<y>" if record and record.dag_id else None
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert len(re.findall(r'<g class="node"', svg)) == len(graph.nodes) == 5
    assert len(re.findall(r'<path class="edge"', svg)) == len(graph.edges) == 3
    for source, target in graph.edges:
        assert f'data-from="lake:{source[1]}@{source[2]}" data-to="lake:{target[1]}@{target[2]}"' in svg
    # Run ids are user text: escaped. The rolled-back snapshot is dashed and says so.
    assert "run &lt;1&gt;" in svg and "run <1>" not in svg
    assert f'href="/run?id={ids["f1"]}&amp;x=&lt;y&gt;"' in svg
    off = svg.split(f'id="lake:features.events@{ids["f2"]}"')[1].split("</g>")[0]
    assert "stroke-dasharray" in off and "off branch" in off
    # Columns by depth: what features read sits left of features.
    x = {
        name: int(re.search(rf'id="lake:{table}@{ids[name]}" transform="translate\((\d+),', svg).group(1))
        for name, table in (("c1", "curated.events"), ("f1", "features.events"))
    }
    assert x["c1"] < x["f1"]


def test_svg_of_nothing_says_so():
    from ray_operators.lineage.records import LineageGraph

    assert "No snapshots" in render_svg(LineageGraph(nodes={}, edges=[]))
