"""The Components page's graph, drawn as inline SVG laid out here: one band per plane (outside Istio, control
plane, data plane, addons), so the control plane and the data plane sit apart; edges filtered by plane and by
namespace; zoom and pan in the browser by a few lines of JavaScript in the page itself. Nothing is fetched from
anywhere (no graph library, no CDN), and the text is the page's own size, not a picture scaled to fit.

A handful of components and a few dozen catalog edges: the layout is simple geometry, not a graph library's."""
from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from app import safe
from explain import report as explain

# Top to bottom: who calls in from outside, the control plane, the data plane it configures, the addons watching.
BANDS = {"external": "outside Istio", "control": "control plane", "data": "data plane", "addon": "addons"}
PLANES = {"control": "control plane", "data": "data plane", "addon": "addons"}  # what the filter offers
_FILL = {"external": "#ffffff", "control": "#dce8f8", "data": "#ddf1e2", "addon": "#f6eedc"}
_BAND_FILL = {"external": "#fafafa", "control": "#f2f6fc", "data": "#f1f9f3", "addon": "#fcf8ef"}

BAND_HEIGHT = 190  # room between bands for the edges' labels
NODE_HEIGHT = 54
TEXT = 15  # px at 1:1; the SVG is drawn at its own width, so this is the size read on screen
SMALL = 13


@dataclass(frozen=True)
class Box:
    node: explain.Node
    x: float  # centre
    y: float
    w: float
    h: float = NODE_HEIGHT

    def contains(self, x: float, y: float, pad: float = 0) -> bool:
        return abs(x - self.x) <= self.w / 2 + pad and abs(y - self.y) <= self.h / 2 + pad

    def exit_towards(self, x: float, y: float) -> tuple[float, float]:
        """Where the ray from the centre towards (x, y) leaves the box."""
        dx, dy = x - self.x, y - self.y
        if dx == dy == 0:
            return self.x, self.y
        scale = min(self.w / 2 / abs(dx) if dx else math.inf, self.h / 2 / abs(dy) if dy else math.inf)
        return self.x + dx * scale, self.y + dy * scale


def visible(g: explain.Graph, planes: Collection[str], namespaces: Collection[str] | None,
            namespaces_of: Mapping[str, Collection[str]]) -> explain.Graph:
    """The part of the graph to draw: edges whose ends are both in `planes` (a peer outside Istio is no plane's,
    and goes with whatever it connects to) and, when `namespaces` is given, with an end in one of them; nodes
    of those planes and namespaces, and the ends of the edges kept."""
    plane = {n.id: n.plane for n in g.nodes}

    def in_planes(node: str) -> bool:
        return plane[node] == "external" or plane[node] in planes

    def in_namespaces(node: str) -> bool:
        return namespaces is None or bool(set(namespaces_of.get(node, ())) & set(namespaces))

    edges = tuple(e for e in g.edges if in_planes(e.source) and in_planes(e.target)
                  and (in_namespaces(e.source) or in_namespaces(e.target)))
    ends = {e.source for e in edges} | {e.target for e in edges}
    nodes = tuple(n for n in g.nodes if n.id in ends or (n.plane in planes and in_namespaces(n.id)))
    return explain.Graph(nodes, edges)


def layout(g: explain.Graph) -> tuple[list[Box], float, float]:
    """Boxes for the nodes, band by band, each band's nodes ordered by where their neighbours are (fewer crossings);
    and the drawing's width and height."""
    bands = [[n for n in g.nodes if n.plane == plane] for plane in BANDS]
    bands = [b for b in bands if b]
    widths = {n.id: max(150, 8.6 * max(len(line) for line in n.label.split("\n")) + 28) for n in g.nodes}
    width = max(1000.0, max((sum(widths[n.id] + 40 for n in b) for b in bands), default=0.0))
    neighbours: dict[str, set[str]] = {n.id: set() for n in g.nodes}
    for e in g.edges:
        if e.source != e.target:
            neighbours[e.source].add(e.target)
            neighbours[e.target].add(e.source)
    x: dict[str, float] = {}
    for _ in range(3):  # place, then re-order each band by its neighbours' mean x, twice
        for band in bands:
            band.sort(key=lambda n: (sum(x[m] for m in neighbours[n.id] if m in x) / len(have)
                                     if (have := [m for m in neighbours[n.id] if m in x]) else width / 2))
            # Side by side, each as wide as its text, the room left shared out evenly between them.
            gap, left = (width - sum(widths[n.id] for n in band)) / len(band), 0.0
            for n in band:
                x[n.id] = left + gap / 2 + widths[n.id] / 2
                left += widths[n.id] + gap
    top = BAND_HEIGHT / 2 + 4
    boxes = [Box(n, x[n.id], top + row * BAND_HEIGHT, widths[n.id]) for row, band in enumerate(bands) for n in band]
    # Below the last band: room for the edges between its own boxes, which bend downwards.
    return boxes, width, top + (len(bands) - 0.5) * BAND_HEIGHT + 50


def _bezier(p0: tuple[float, float], c: tuple[float, float], p2: tuple[float, float], t: float) -> tuple[float, float]:
    return tuple((1 - t) ** 2 * a + 2 * (1 - t) * t * b + t * t * d for a, b, d in zip(p0, c, p2))  # type: ignore


def _edge_path(src: Box, dst: Box, label: str,
               taken: list[tuple[float, float, float, float]]) -> tuple[str, tuple[float, float]]:
    """The SVG path of an edge between two boxes and where its label goes (clear of `taken`)."""
    if src is dst:  # app to app: a loop over the box (its neighbours may sit close on either side)
        x0, y0 = src.x, src.y - src.h / 2
        path = (f"M{x0 - 14:.0f},{y0:.0f} C{x0 - 60:.0f},{y0 - 75:.0f} {x0 + 60:.0f},{y0 - 75:.0f} "
                f"{x0 + 14:.0f},{y0:.0f}")
        return path, (x0, y0 - 56)
    (x1, y1), (x2, y2) = (src.x, src.y), (dst.x, dst.y)
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy)
    if abs(dy) < 1:  # within a band: downwards, under the boxes between the two ends
        c = ((x1 + x2) / 2, y1 + src.h / 2 + 0.12 * length + 20)
    else:  # to its left: two edges between the same pair, one each way, bend apart
        bend = 0.12 * length + 12
        c = ((x1 + x2) / 2 + dy / length * bend, (y1 + y2) / 2 - dx / length * bend)
    p0, p2 = src.exit_towards(*c), dst.exit_towards(*c)
    path = f"M{p0[0]:.0f},{p0[1]:.0f} Q{c[0]:.0f},{c[1]:.0f} {p2[0]:.0f},{p2[1]:.0f}"
    return path, _place_label(label, p0, c, p2, taken)


def svg(g: explain.Graph) -> str:
    """The graph as an SVG element (no XML prolog: it goes inside the page)."""
    boxes, width, height = layout(g)
    at = {b.node.id: b for b in boxes}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="meshgraph" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'width="{width:.0f}" height="{height:.0f}" font-family="sans-serif" role="img" '
           f'aria-label="Istio components and who connects to whom">',
           '<defs><marker id="mg-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>']
    rows = sorted({(b.y, b.node.plane) for b in boxes})
    for y, plane in rows:
        out.append(f'<rect x="0" y="{y - BAND_HEIGHT / 2 + 8:.0f}" width="{width:.0f}" height="{BAND_HEIGHT - 16}" '
                   f'rx="10" fill="{_BAND_FILL[plane]}"/>')
        out.append(f'<text x="12" y="{y - BAND_HEIGHT / 2 + 30:.0f}" font-size="{SMALL}" font-weight="600" '
                   f'fill="#555" letter-spacing="0.04em">{safe.html(BANDS[plane].upper())}</text>')
    taken = [(b.x, b.y, b.w / 2 + 4, b.h / 2 + 4) for b in boxes]  # label boxes must not cover nodes or labels
    labels = []
    # Loops first: their label has one place, the others' labels move along their edges around it.
    for e in sorted(g.edges, key=lambda e: e.source != e.target):
        src, dst = at[e.source], at[e.target]
        title = safe.html(f"{e.source} → {e.target}: {e.label}, {e.purpose}")
        attrs = f'class="edge" data-ends="{safe.html(e.source)} {safe.html(e.target)}"'
        path, (lx, ly) = _edge_path(src, dst, e.label, taken)
        hw = len(e.label) * SMALL * 0.3 + 6
        taken.append((lx, ly, hw, SMALL * 0.75))
        out.append(f'<g {attrs}><title>{title}</title><path d="{path}" fill="none" stroke="#666" stroke-width="1.4" '
                   f'marker-end="url(#mg-arrow)"/><path d="{path}" fill="none" stroke="transparent" '
                   f'stroke-width="10"/></g>')
        labels.append(f'<g {attrs}><title>{title}</title><rect x="{lx - hw:.0f}" y="{ly - SMALL * 0.75:.0f}" '
                      f'width="{2 * hw:.0f}" height="{SMALL * 1.5:.0f}" rx="4" fill="#fff" fill-opacity="0.92" '
                      f'stroke="#ccc"/><text x="{lx:.0f}" y="{ly + SMALL * 0.35:.0f}" font-size="{SMALL}" '
                      f'text-anchor="middle" fill="#222">{safe.html(e.label)}</text></g>')
    out += labels  # above every edge, so a line never crosses a label
    for b in boxes:
        name, _, detail = b.node.label.partition("\n")
        dash = ' stroke-dasharray="5 4"' if b.node.plane == "external" else ""
        out.append(f'<g class="node" data-id="{safe.html(b.node.id)}"><title>{safe.html(b.node.label)}</title>'
                   f'<rect x="{b.x - b.w / 2:.0f}" y="{b.y - b.h / 2:.0f}" width="{b.w:.0f}" height="{b.h}" rx="9" '
                   f'fill="{_FILL[b.node.plane]}" stroke="#445"{dash}/>'
                   f'<text x="{b.x:.0f}" y="{b.y - (4 if detail else -5):.0f}" font-size="{TEXT}" font-weight="600" '
                   f'text-anchor="middle" fill="#111">{safe.html(name)}</text>'
                   + (f'<text x="{b.x:.0f}" y="{b.y + 15:.0f}" font-size="{SMALL}" text-anchor="middle" '
                      f'fill="#333">{safe.html(detail)}</text>' if detail else "") + "</g>")
    out.append("</svg>")
    return "".join(out)


def _place_label(text: str, p0: tuple[float, float], c: tuple[float, float], p2: tuple[float, float],
                 taken: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """A point on the edge for its label, the middle if it is free, else the nearest free one along the edge."""
    hw, hh = len(text) * SMALL * 0.3 + 6, SMALL * 0.75
    for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78):
        x, y = _bezier(p0, c, p2, t)
        if all(abs(x - ox) > hw + ow or abs(y - oy) > hh + oh for ox, oy, ow, oh in taken):
            return x, y
    return _bezier(p0, c, p2, 0.5)


# Zoom with the wheel (or the buttons), pan by dragging; a node under the pointer lights up its edges.
_SCRIPT = """
(() => {
  const root = document.getElementById("%(id)s");
  if (!root) return;
  const svg = root.querySelector("svg");
  const full = svg.viewBox.baseVal;
  const home = [full.x, full.y, full.width, full.height];
  let vb = home.slice();
  const fit = () => { vb = home.slice(); draw(); };
  const draw = () => svg.setAttribute("viewBox", vb.join(" "));
  const zoom = (k, cx, cy) => {
    const w = Math.min(Math.max(vb[2] * k, home[2] / 8), home[2] * 2);
    const s = w / vb[2];
    vb = [cx - (cx - vb[0]) * s, cy - (cy - vb[1]) * s, w, vb[3] * s];
    draw();
  };
  const at = (ev) => {
    const r = svg.getBoundingClientRect();
    return [vb[0] + (ev.clientX - r.left) / r.width * vb[2], vb[1] + (ev.clientY - r.top) / r.height * vb[3]];
  };
  svg.addEventListener("wheel", (ev) => { ev.preventDefault(); zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, ...at(ev)); },
                       {passive: false});
  let drag = null;
  svg.addEventListener("pointerdown", (ev) => { drag = [ev.clientX, ev.clientY]; svg.setPointerCapture(ev.pointerId);
                                                svg.style.cursor = "grabbing"; });
  svg.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    vb[0] -= (ev.clientX - drag[0]) / r.width * vb[2];
    vb[1] -= (ev.clientY - drag[1]) / r.height * vb[3];
    drag = [ev.clientX, ev.clientY];
    draw();
  });
  const stop = () => { drag = null; svg.style.cursor = "grab"; };
  svg.addEventListener("pointerup", stop);
  svg.addEventListener("pointercancel", stop);
  const centre = () => [vb[0] + vb[2] / 2, vb[1] + vb[3] / 2];
  root.querySelector("[data-zoom=in]").onclick = () => zoom(1 / 1.3, ...centre());
  root.querySelector("[data-zoom=out]").onclick = () => zoom(1.3, ...centre());
  root.querySelector("[data-zoom=fit]").onclick = fit;
  root.querySelectorAll(".node").forEach((n) => {
    const id = n.dataset.id;
    const mark = (on) => root.querySelectorAll(".edge").forEach((e) => {
      if (e.dataset.ends.split(" ").includes(id)) e.classList.toggle("lit", on);
      else e.classList.toggle("dim", on);
    });
    n.addEventListener("pointerenter", () => mark(true));
    n.addEventListener("pointerleave", () => mark(false));
  });
})();
"""

_STYLE = """
#%(id)s { border: 1px solid #d6d6d9; border-radius: 0.5rem; overflow: hidden; position: relative;
          box-sizing: border-box; }
#%(id)s svg { display: block; width: 100%%; height: auto; max-height: %(max)spx; cursor: grab; touch-action: none;
              user-select: none; }
#%(id)s .bar { position: absolute; top: 8px; right: 8px; display: flex; gap: 4px; }
#%(id)s .bar button { font: 600 15px sans-serif; min-width: 34px; height: 30px; border: 1px solid #bbb;
                      border-radius: 6px; background: #fff; cursor: pointer; }
#%(id)s .edge.lit path:first-of-type { stroke: #c2410c; stroke-width: 2.6; }
#%(id)s .edge.lit rect { stroke: #c2410c; }
#%(id)s .edge.dim { opacity: 0.25; }
#%(id)s .edge:hover path:first-of-type { stroke: #c2410c; stroke-width: 2.6; }
"""


# The drawing's height on screen, at most: the graph and the filters above it fit on a 1440 × 900 screen; zoom shows
# the rest.
MAX_HEIGHT = 820


def html_widget(g: explain.Graph, element_id: str = "meshgraph") -> str:
    """The SVG with its zoom buttons, style and script, for st.html: the script puts the SVG in the page (st.html
    strips SVG from the HTML it is given, not what a script adds), so it is drawn with the page's own font and size,
    in the page (a frame would be another document to load)."""
    keys = {"id": element_id, "max": MAX_HEIGHT}
    # A string in the script, with no "<" in it: Streamlit's sanitizer drops a script whose text looks like markup.
    drawing = json.dumps(svg(g)).replace("<", "\\u003c")
    return (f"<style>{_STYLE % keys}</style><div id=\"{element_id}\"><div class=\"bar\">"
            '<button data-zoom="in" title="Zoom in">+</button><button data-zoom="out" title="Zoom out">−</button>'
            '<button data-zoom="fit" title="Fit the whole graph">fit</button></div></div>'
            f"<script>document.getElementById(\"{element_id}\").insertAdjacentHTML(\"beforeend\", {drawing});"
            f"{_SCRIPT % keys}</script>")
