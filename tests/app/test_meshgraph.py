"""The Components page's graph layout (app/meshgraph.py) on the demo cluster: planes apart, boxes apart, text
escaped."""
from __future__ import annotations

from itertools import combinations

from app import meshgraph
from cluster.inventory import Inventory
from explain import report as explain


def test_planes_are_bands_apart_and_no_box_overlaps_another(demo_inventory: Inventory):
    graph = explain.explain(demo_inventory).graph
    boxes, width, height = meshgraph.layout(graph)
    assert {b.node.id for b in boxes} == {n.id for n in graph.nodes}
    row = {plane: {b.y for b in boxes if b.node.plane == plane} for plane in meshgraph.BANDS}
    assert all(len(ys) == 1 for ys in row.values() if ys)  # one band per plane
    assert max(row["external"]) < min(row["control"]) < min(row["data"]) < min(row["addon"])
    for a, b in combinations(boxes, 2):
        assert abs(a.x - b.x) >= (a.w + b.w) / 2 or abs(a.y - b.y) >= (a.h + b.h) / 2, (a.node.id, b.node.id)
    assert all(b.x - b.w / 2 >= 0 and b.x + b.w / 2 <= width and b.y + b.h / 2 <= height for b in boxes)


def test_names_from_the_cluster_are_escaped():
    g = explain.Graph((explain.Node("sidecar", "sidecar\n<script>alert(1)</script>", "data"),), ())
    assert "<script>alert" not in meshgraph.svg(g) and "&lt;script&gt;" in meshgraph.svg(g)


def test_the_script_holds_no_markup(demo_inventory: Inventory):
    """Streamlit's sanitizer drops a <script> whose text looks like markup: the SVG goes in as a JS string
    without a "<"."""
    html = meshgraph.html_widget(explain.explain(demo_inventory).graph)
    script = html[html.index("<script>") + len("<script>"):html.rindex("</script>")]
    assert "<" not in script and "\\u003csvg" in script


def test_a_band_of_many_wide_boxes_widens_the_drawing_instead_of_overlapping():
    nodes = tuple(explain.Node(f"gateway-{i}", f"gateway-{i}\n{'x' * (10 + 8 * i)}", "data") for i in range(7))
    boxes, width, _ = meshgraph.layout(explain.Graph(nodes, ()))
    boxes.sort(key=lambda b: b.x)
    assert width > 1000
    assert all(a.x + a.w / 2 <= b.x - b.w / 2 for a, b in zip(boxes, boxes[1:]))
