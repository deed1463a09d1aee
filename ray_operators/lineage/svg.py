"""The lineage graph drawn as SVG: ``table@snapshot -> table@snapshot``, left to right.

A node's column is its depth (the longest chain of reads before it), so raw-side tables sit on
the left and model outputs on the right. Pure string building, no drawing library: the pages
embed the SVG inline, and the server never runs JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from graphlib import TopologicalSorter
from html import escape

from ray_operators.lineage.records import RAW_PREFIX, LineageGraph, NodeKey, SnapshotRecord, is_raw

WIDTH, HEIGHT = 260, 58
COLUMN_GAP, ROW_GAP, MARGIN = 90, 16, 16
#: Fill colours by stage; anything else (a commit made outside a pipeline) is grey.
STAGE_COLOURS = {
    "curate": "#e3f2fd",
    "preprocess": "#e8f5e9",
    "train": "#fff3e0",
    "infer": "#f3e5f5",
}
UNKNOWN_COLOUR = "#f5f5f5"
RAW_COLOUR = "#fffde7"


def _depths(graph: LineageGraph) -> dict[NodeKey, int]:
    preds: dict[NodeKey, set[NodeKey]] = {key: set() for key in graph.nodes}
    for source, target in graph.edges:
        preds[target].add(source)
    depth: dict[NodeKey, int] = {}
    for key in TopologicalSorter(preds).static_order():
        depth[key] = 1 + max((depth[p] for p in preds[key]), default=-1)
    return depth


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(key: NodeKey, record: SnapshotRecord | None) -> tuple[str, str, str]:
    """Three lines: the table; the snapshot (and whether it left the branch); what wrote it."""
    _, table, snapshot_id = key
    if is_raw(key):
        path = table.removeprefix(RAW_PREFIX)
        return "raw input", "…" + path[-37:] if len(path) > 38 else path, "files curated from here"
    if record is None:
        return table, f"@{snapshot_id}", "not in the catalog (expired?)"
    second = f"@{snapshot_id}" + ("" if record.on_branch else " · off branch")
    if record.hidden:
        third = "written by a DAG you cannot read"
    elif record.dag_id:
        third = f"{record.stage or record.operation} · {record.dag_id} / {record.run_id}"
    else:
        third = f"{record.operation} · outside a pipeline"
    return table, second, third


def render_svg(
    graph: LineageGraph, href: Callable[[NodeKey, SnapshotRecord | None], str | None] | None = None
) -> str:
    """The graph as one ``<svg>`` element; ``href`` gives each node's link (or None)."""
    if not graph.nodes:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="40" role="img" aria-label="no lineage"><text x="8" y="24" font-family="sans-serif" font-size="13">No snapshots to draw.</text></svg>'
    depth = _depths(graph)
    columns: dict[int, list[NodeKey]] = {}
    for key in sorted(
        graph.nodes, key=lambda k: (k[1], -(getattr(graph.nodes[k], "committed_at_ms", 0) or 0), k[2])
    ):
        columns.setdefault(depth[key], []).append(key)
    place: dict[NodeKey, tuple[int, int]] = {}
    for col, keys in columns.items():
        for row, key in enumerate(keys):
            place[key] = (MARGIN + col * (WIDTH + COLUMN_GAP), MARGIN + row * (HEIGHT + ROW_GAP))
    width = MARGIN * 2 + (max(columns) + 1) * WIDTH + max(columns) * COLUMN_GAP
    height = MARGIN * 2 + max(len(k) for k in columns.values()) * (HEIGHT + ROW_GAP) - ROW_GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Iceberg snapshot lineage" font-family="sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#607d8b"/></marker></defs>',
    ]
    for source, target in graph.edges:
        (x1, y1), (x2, y2) = place[source], place[target]
        x1, y1, y2 = x1 + WIDTH, y1 + HEIGHT // 2, y2 + HEIGHT // 2
        bend = COLUMN_GAP // 2
        parts.append(
            f'<path class="edge" data-from="{escape(_node_id(source))}" data-to="{escape(_node_id(target))}" '
            f'd="M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2} {y2}" fill="none" stroke="#607d8b" '
            'stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for key, (x, y) in place.items():
        record = graph.nodes[key]
        first, second, third = _label(key, record)
        fill = STAGE_COLOURS.get(record.stage or "", UNKNOWN_COLOUR) if record else UNKNOWN_COLOUR
        fill = RAW_COLOUR if is_raw(key) else fill
        dashed = (
            ' stroke-dasharray="5 3"' if not is_raw(key) and (record is None or not record.on_branch) else ""
        )
        node = (
            f'<g class="node" id="{escape(_node_id(key))}" transform="translate({x},{y})">'
            f"<title>{escape(key[1] if is_raw(key) else f'{key[1]}@{key[2]}')}</title>"
            f'<rect width="{WIDTH}" height="{HEIGHT}" rx="6" fill="{fill}" stroke="#37474f"{dashed}/>'
            f'<text x="10" y="18" font-size="13" font-weight="bold">{escape(_short(first, 34))}</text>'
            f'<text x="10" y="35" font-size="11">{escape(_short(second, 40))}</text>'
            f'<text x="10" y="50" font-size="10" fill="#455a64">{escape(_short(third, 48))}</text></g>'
        )
        link = href(key, record) if href else None
        parts.append(f'<a href="{escape(link)}">{node}</a>' if link else node)
    parts.append("</svg>")
    return "".join(parts)


def _node_id(key: NodeKey) -> str:
    return f"{key[0]}:{key[1]}" if is_raw(key) else f"{key[0]}:{key[1]}@{key[2]}"
